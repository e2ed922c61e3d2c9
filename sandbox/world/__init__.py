"""The simulated world behind the API: users, their Pay Score, and the rules that move it."""
