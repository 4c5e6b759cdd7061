"""An ephemeral query-image cache with guaranteed purge."""
