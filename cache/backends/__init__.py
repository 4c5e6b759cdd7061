"""Where the bytes live. The store owns metadata and time; a backend only holds bytes."""
