"""Plain helpers shared by test modules of different folders (tests/ is on sys.path: `support.*`)."""
