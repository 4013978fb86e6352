"""OpenCLIP's training entry point with wit's model configurations registered (for
benchmarks/train_e2e.py): ``torchrun ... benchmarks/_openclip_main.py CONFIG_DIR <open_clip_train args>``."""

import sys

import open_clip
from open_clip_train.main import main

if __name__ == "__main__":
    open_clip.add_model_config(sys.argv[1])
    main(sys.argv[2:])
