"""What a device command may be, shared by the API's request model, alarm actions and the
command service: one line of printable text (it travels in a JSON body to the device)."""

COMMAND_PATTERN = r"^[^\x00-\x1f]+$"
