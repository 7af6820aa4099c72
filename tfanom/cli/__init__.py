"""The command lines: each turns its flags into a typed config and makes one library call."""
