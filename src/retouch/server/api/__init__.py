"""Our own job API (/api/v1/jobs)."""
