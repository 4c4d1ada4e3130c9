"""Use cases: what the API (and later the console) asks the server to do."""
