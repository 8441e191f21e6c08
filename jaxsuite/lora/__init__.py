"""MoS (mixture of shards) and its peers as adapters for Flax NNX models.

Public API (re-exported here)::

    from jaxsuite import lora

    names = lora.wrap(model, lora.LoRAConfig(target_modules=("q_proj", "v_proj"),
                                             rank=8, alpha=16.0, seed=0))
    graphdef, params, rest = nnx.split(model, lora.trainable, ...)
    lora.merge(model); lora.unmerge(model); lora.unwrap(model)
    lora.save_adapters(model, "adapters/"); lora.load_adapters(model, "adapters/")
    lora.count_params(nnx.eval_shape(make_wrapped_model))

Modules: ``config`` (one dataclass per method: LoRA, MoS, VeRA, Tied-LoRA,
PRoLoRA), ``targets`` (finding layers by name pattern), ``methods`` (each
method's parameter specs and its A, B factors), ``adapters`` (the wrapper
module, variable types and filters, merge/unmerge), ``checkpoint``
(saving and loading adapters alone), ``transformer`` (a small LLaMA-style
decoder), ``data`` (procedural token streams and the adaptation tasks),
``adapt`` (training many adapter instances at once), ``report`` (tables,
savings, verdict, figure) and ``experiment`` (the launcher's run).
"""

from jaxsuite.lora.adapters import (
    Adapted,
    AdapterParam,
    AdapterState,
    SharedAdapterParam,
    SharedAdapterState,
    adapted_layers,
    adapter_vars,
    count_params,
    merge,
    scan_axes,
    select,
    shared,
    trainable,
    unmerge,
    unwrap,
    wrap,
)
from jaxsuite.lora.checkpoint import (
    adapter_arrays,
    load_adapters,
    save_adapters,
    set_adapter_arrays,
)
from jaxsuite.lora.config import (
    AdapterConfig,
    LoRAConfig,
    MoSConfig,
    PRoLoRAConfig,
    TiedLoRAConfig,
    VeRAConfig,
)
from jaxsuite.lora.methods import count_from_shapes, mos_indices

__all__ = [
    "Adapted",
    "AdapterConfig",
    "AdapterParam",
    "AdapterState",
    "LoRAConfig",
    "MoSConfig",
    "PRoLoRAConfig",
    "SharedAdapterParam",
    "SharedAdapterState",
    "TiedLoRAConfig",
    "VeRAConfig",
    "adapted_layers",
    "adapter_arrays",
    "adapter_vars",
    "count_from_shapes",
    "count_params",
    "load_adapters",
    "merge",
    "mos_indices",
    "save_adapters",
    "scan_axes",
    "select",
    "set_adapter_arrays",
    "shared",
    "trainable",
    "unmerge",
    "unwrap",
    "wrap",
]
