"""Where the rollout controller runs: its Ray actor (``actor``) and its SQLite store (``store``).

Nothing is imported here: the manager imports the store, and the actor imports the manager.
"""
