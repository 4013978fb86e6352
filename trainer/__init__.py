"""trainer: CLIP models, tokenizer, contrastive loss, a streaming webdataset loader with exact
resume, distributed training (``torchrun -m trainer.train``) and zero-shot evaluation."""
