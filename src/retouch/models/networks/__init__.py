"""Extra networks applied to a loaded model: LoRA/LyCORIS merged and restored exactly, textual inversion.

Spec: a1111-prompts.md §4 (embeddings) and §5 (LoRA and LyCORIS). Each module of this package holds one
idea; nothing is imported here, so importing the package costs nothing.
"""
