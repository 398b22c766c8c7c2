"""The appliance's stages for one file (intake, models + commit) and the
records and verdicts they share; edge/app.py wires them to threads."""
