"""OpenCLIP's training entry point with wit's model configurations registered (for
benchmarks/train_e2e.py): ``torchrun ... benchmarks/_openclip_main.py CONFIG_DIR <open_clip_train args>``.

open_clip_train 3.3.0 wraps CPU models in DDP with ``device_ids=[cpu]``, which torch rejects;
the wrapper below drops ``device_ids`` for CPU modules (torch's own rule), nothing else changes.
"""

import sys

import open_clip
import torch
from open_clip_train.main import main

_DDP = torch.nn.parallel.DistributedDataParallel


class _CpuDDP(_DDP):
    def __init__(self, module, device_ids=None, **kwargs):
        if device_ids and all(getattr(d, "type", str(d)) == "cpu" for d in device_ids):
            device_ids = None
        super().__init__(module, device_ids=device_ids, **kwargs)


if __name__ == "__main__":
    torch.nn.parallel.DistributedDataParallel = _CpuDDP
    open_clip.add_model_config(sys.argv[1])
    main(sys.argv[2:])
