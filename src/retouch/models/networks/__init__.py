"""Networks applied to a loaded model for a job: LoRA/LyCORIS weight deltas and textual-inversion embeddings."""
