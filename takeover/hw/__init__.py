"""Robot links behind one ABC, chosen by URL (sim://, serial, ws://)."""
