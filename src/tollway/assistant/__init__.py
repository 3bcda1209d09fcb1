"""The support assistant: answers "do I have a balance?" from the asker's live figures and the shipped docs."""
