"""Reports read only the results store: terminal tables, the HTML leaderboard, exports."""
