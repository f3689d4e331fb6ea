"""A1111's prompt language as pure functions (no torch): spec a1111-prompts.md."""
