"""Trainers. The Dassl glue (coop, prograd, zsclip) registers itself when train.py imports it;
the math (prograd_ops) and the CLIP modules (clip_prompt) import without Dassl."""
