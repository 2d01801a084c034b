"""The DistributedDataParallel keywords: gradient bucket views always, a static graph only where it is valid."""

from __future__ import annotations

import pytest
import torch

from tuigpt.engine.distributed import DDP_BUCKET_MB, ddp_options
from tuigpt.run.errors import UserError

CPU, GPU = torch.device("cpu"), torch.device("cuda", 1)


def test_static_graph_only_for_eager_models_without_no_sync_accumulation() -> None:
    assert ddp_options(CPU, compiled=False, micro_steps=1, environ={})["static_graph"] is True
    assert ddp_options(CPU, compiled=False, micro_steps=2, environ={})["static_graph"] is False  # reducer assert
    assert ddp_options(GPU, compiled=True, micro_steps=1, environ={})["static_graph"] is False
    opts = ddp_options(GPU, compiled=True, micro_steps=4, environ={})
    assert opts["gradient_as_bucket_view"] is True and opts["device_ids"] == [1]
    assert opts["bucket_cap_mb"] == DDP_BUCKET_MB["cuda"] == 100.0  # measured faster than torch's 25 on NCCL
    assert ddp_options(CPU, False, 1, {})["bucket_cap_mb"] == 25.0 and ddp_options(CPU, False, 1, {})["device_ids"] is None


def test_environment_overrides_for_measurement() -> None:
    env = {"TUIGPT_DDP_BUCKET_MB": "100", "TUIGPT_DDP_STATIC_GRAPH": "1"}
    opts = ddp_options(GPU, compiled=True, micro_steps=4, environ=env)
    assert opts["bucket_cap_mb"] == 100.0 and opts["static_graph"] is True
    with pytest.raises(UserError, match="TUIGPT_DDP_BUCKET_MB='big' is not a number"):
        ddp_options(GPU, compiled=True, micro_steps=1, environ={"TUIGPT_DDP_BUCKET_MB": "big"})
