"""Meshes, multi-host start-up and process-local data for every paper.

The same code runs on one process with many devices (the tests' 8 CPU devices,
one GPU machine) and on many processes through ``jax.distributed``:

* :func:`make_mesh` / :func:`data_mesh` build meshes with their axis types
  stated explicitly, so the default (``Auto`` here, ``Explicit`` in
  ``jax.make_mesh`` since JAX 0.9) never changes what a caller gets.
* :func:`initialize_distributed` starts the multi-process runtime from
  arguments, environment variables or absl flags (see
  :func:`define_distributed_flags`), and is a no-op for a single process.
* :func:`process_batch_slice`, :func:`global_array_from_process_local` and
  :func:`to_host` move data between the rows a process owns, a global
  ``jax.Array`` sharded over every process's devices, and a numpy array that
  every host can read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec

ENV_COORDINATOR = "JAXSUITE_COORDINATOR"
ENV_NUM_PROCESSES = "JAXSUITE_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXSUITE_PROCESS_ID"
ENV_LOCAL_DEVICE_COUNT = "JAXSUITE_LOCAL_DEVICE_COUNT"


def _axis_type_enum() -> Any | None:
    """``jax.sharding.AxisType`` where this JAX has it, else ``None``."""
    return getattr(jax.sharding, "AxisType", None)


def make_mesh(
    axis_shapes: Sequence[int],
    axis_names: Sequence[str],
    *,
    devices: Sequence[Any] | None = None,
    explicit: bool = False,
) -> Mesh:
    """Builds a device mesh with every axis ``Auto`` (or ``Explicit``).

    ``jax.make_mesh`` changed its default axis type to ``Explicit`` in JAX 0.9;
    this wrapper always passes the types, so ``shard_map``/``jit`` behave the
    same on every supported version. With ``Auto`` axes (the default here) an
    input whose sharding differs from a ``shard_map`` ``in_specs`` is resharded
    silently; with ``Explicit`` axes it raises, so put inputs on the mesh with
    their ``NamedSharding`` first.

    Args:
      axis_shapes: size of each mesh axis; their product must equal the number
        of devices used (``len(devices)`` or ``jax.device_count()``).
      axis_names: one name per axis.
      devices: devices to lay out (all global devices when ``None``).
      explicit: make every axis ``AxisType.Explicit`` instead of ``Auto``.

    Returns:
      A ``jax.sharding.Mesh`` of shape ``axis_shapes``.

    Raises:
      ValueError: shapes and names differ in length.
      NotImplementedError: ``explicit=True`` on a JAX without axis types.
    """
    axis_shapes = tuple(int(s) for s in axis_shapes)
    axis_names = tuple(axis_names)
    if len(axis_shapes) != len(axis_names):
        raise ValueError(
            f"axis_shapes {axis_shapes} and axis_names {axis_names} differ in length"
        )
    kwargs: dict[str, Any] = {}
    if devices is not None:
        kwargs["devices"] = list(devices)
    axis_type = _axis_type_enum()
    if axis_type is not None:
        kind = axis_type.Explicit if explicit else axis_type.Auto
        try:
            return jax.make_mesh(
                axis_shapes,
                axis_names,
                axis_types=(kind,) * len(axis_names),
                **kwargs,
            )
        except TypeError as e:  # A JAX whose make_mesh has no axis_types.
            if "axis_types" not in str(e):
                raise
    if explicit:
        raise NotImplementedError(
            f"jax {jax.__version__} has no explicit mesh axes (jax.sharding.AxisType)"
        )
    # Before axis types existed every mesh axis behaved as Auto does now.
    return jax.make_mesh(axis_shapes, axis_names, **kwargs)


def data_mesh(axis_name: str = "data", *, explicit: bool = False) -> Mesh:
    """A 1-D mesh over all global devices, for data parallelism.

    Args:
      axis_name: name of the single axis.
      explicit: make the axis ``Explicit`` instead of ``Auto``.

    Returns:
      A mesh of shape ``(jax.device_count(),)``.
    """
    return make_mesh((jax.device_count(),), (axis_name,), explicit=explicit)


def is_distributed_initialized() -> bool:
    """Whether ``jax.distributed.initialize`` has already run in this process."""
    is_init = getattr(jax.distributed, "is_initialized", None)
    if is_init is not None:
        return bool(is_init())
    try:  # JAX versions without the public query.
        from jax._src import distributed as _distributed

        return _distributed.global_state.client is not None
    except (ImportError, AttributeError):
        return False


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={value!r} is not an int") from e


def _platforms_include_cpu() -> bool:
    """Whether the CPU backend may be used (``JAX_PLATFORMS`` unset or lists cpu)."""
    platforms = getattr(jax.config, "jax_platforms", None) or os.environ.get(
        "JAX_PLATFORMS", ""
    )
    return not platforms or "cpu" in str(platforms).split(",")


def _process_coordinates(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
) -> tuple[str, int, int] | None:
    """``(coordinator_address, num_processes, process_id)`` of a multi-process
    run, each argument left ``None`` read from the environment; ``None`` when
    neither a coordinator nor a process count is named (a single process).

    Raises:
      ValueError: only some of the three are named, or ``process_id`` is not
        in ``[0, num_processes)``.
    """
    if coordinator_address is None:
        coordinator_address = os.environ.get(ENV_COORDINATOR, "").strip() or None
    if num_processes is None:
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(ENV_PROCESS_ID)

    if coordinator_address is None and num_processes is None:
        return None
    missing = [
        name
        for name, value in (
            ("coordinator_address", coordinator_address),
            ("num_processes", num_processes),
            ("process_id", process_id),
        )
        if value is None
    ]
    if missing:
        raise ValueError(
            f"multi-process run needs {', '.join(missing)} (arguments or "
            f"{ENV_COORDINATOR}/{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID})"
        )
    num_processes, process_id = int(num_processes), int(process_id)
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} not in [0, {num_processes})")
    return coordinator_address, num_processes, process_id


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_count: int | None = None,
    *,
    cpu_collectives: str | None = "gloo",
    **initialize_kwargs: Any,
) -> bool:
    """Starts ``jax.distributed`` for a multi-process run; a no-op otherwise.

    Each argument left ``None`` is read from the environment:
    ``JAXSUITE_COORDINATOR`` (``host:port`` of process 0),
    ``JAXSUITE_NUM_PROCESSES``, ``JAXSUITE_PROCESS_ID`` and
    ``JAXSUITE_LOCAL_DEVICE_COUNT``. When neither the arguments nor the
    environment name a coordinator or a process count, nothing happens (a
    single-process run). Must be called before any JAX computation initialises
    a backend.

    Args:
      coordinator_address: ``host:port`` where process 0 runs the coordinator.
      num_processes: total number of processes.
      process_id: this process's index in ``[0, num_processes)``.
      local_device_count: number of CPU devices this process exposes (sets
        ``jax_num_cpu_devices``); ignored by accelerator backends.
      cpu_collectives: cross-process collectives for the CPU backend
        (``"gloo"``, ``"mpi"``), set before initialising; ``None`` keeps the
        current setting.
      **initialize_kwargs: passed on to ``jax.distributed.initialize`` (e.g.
        ``initialization_timeout``).

    Returns:
      True when the multi-process runtime is (now or already) running, False
      for a single process.

    Raises:
      ValueError: only some of coordinator, process count and process id given.
    """
    if is_distributed_initialized():
        return True
    if local_device_count is None:
        local_device_count = _env_int(ENV_LOCAL_DEVICE_COUNT)
    if local_device_count is not None:
        jax.config.update("jax_num_cpu_devices", int(local_device_count))

    process = _process_coordinates(coordinator_address, num_processes, process_id)
    if process is None:
        return False
    coordinator_address, num_processes, process_id = process
    if cpu_collectives is not None and _platforms_include_cpu():
        try:
            jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
        except AttributeError:  # A JAX without the option: its CPU default.
            pass
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        **initialize_kwargs,
    )
    return True


# name -> (help text, lower bound or None for the string flag).
_FLAGS = {
    "coordinator_address": (f"host:port of process 0 (else ${ENV_COORDINATOR}).", None),
    "num_processes": (f"Number of processes (else ${ENV_NUM_PROCESSES}).", 1),
    "process_id": (f"Index of this process (else ${ENV_PROCESS_ID}).", 0),
    "local_device_count": (f"CPU devices (else ${ENV_LOCAL_DEVICE_COUNT}).", 1),
}


def define_distributed_flags(flag_values: flags.FlagValues | None = None) -> None:
    """Defines the absl flags read by :func:`initialize_from_flags`.

    Flags: ``--coordinator_address``, ``--num_processes``, ``--process_id``,
    ``--local_device_count`` (all default ``None``: fall back to the
    environment). Safe to call more than once; a flag already defined is kept.

    Args:
      flag_values: registry to define them in (``absl.flags.FLAGS`` if None).
    """
    fv = flags.FLAGS if flag_values is None else flag_values
    for name, (help_text, lower_bound) in _FLAGS.items():
        if name in fv:
            continue
        if lower_bound is None:
            flags.DEFINE_string(name, None, help_text, flag_values=fv)
        else:
            flags.DEFINE_integer(
                name, None, help_text, lower_bound=lower_bound, flag_values=fv
            )


def initialize_from_flags(
    flag_values: flags.FlagValues | None = None, **kwargs: Any
) -> bool:
    """Calls :func:`initialize_distributed` with the parsed absl flags.

    Args:
      flag_values: parsed registry (``absl.flags.FLAGS`` if None); the flags
        are defined there first if missing.
      **kwargs: further keyword arguments for :func:`initialize_distributed`.

    Returns:
      What :func:`initialize_distributed` returns.
    """
    fv = flags.FLAGS if flag_values is None else flag_values
    define_distributed_flags(fv)
    values = {name: fv[name].value for name in _FLAGS}
    return initialize_distributed(**values, **kwargs)


def process_batch_slice(
    global_batch: int,
    *,
    sharding: NamedSharding | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> slice:
    """Rows ``[start, stop)`` of a global batch that this process owns.

    Without ``sharding`` the batch is split evenly and in process order, which
    is what a batch axis sharded over a mesh from :func:`make_mesh` (devices
    grouped by process) holds. With ``sharding`` the rows are those of the
    leading axis that this process's devices address, so they always agree
    with :func:`global_array_from_process_local`.

    Args:
      global_batch: size of the leading (batch) axis over all processes.
      sharding: ``NamedSharding`` of the global array, leading axis = batch.
      process_index: defaults to ``jax.process_index()`` (even split only).
      process_count: defaults to ``jax.process_count()`` (even split only).

    Returns:
      ``slice(start, stop)`` with ``stop - start = global_batch / process_count``
      for the even split; slices of all processes partition ``range(global_batch)``.

    Raises:
      ValueError: the batch does not split evenly, or the process's rows under
        ``sharding`` are not one contiguous block.
    """
    global_batch = int(global_batch)
    if sharding is not None:
        if process_index is not None or process_count is not None:
            raise ValueError("give either sharding or process_index/process_count")
        # Only the leading axis matters: look at a 1-D array sharded like it.
        lead = sharding.spec[0] if len(sharding.spec) else None
        rows_sharding = NamedSharding(sharding.mesh, PartitionSpec(lead))
        indices = rows_sharding.addressable_devices_indices_map((global_batch,))
        rows: set[int] = set()
        for index in indices.values():
            rows.update(range(global_batch)[index[0]])
        lo, hi = min(rows), max(rows) + 1
        if len(rows) != hi - lo:
            raise ValueError(f"process rows {sorted(rows)} are not contiguous")
        return slice(lo, hi)
    if process_index is None:
        process_index = jax.process_index()
    if process_count is None:
        process_count = jax.process_count()
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if global_batch % process_count:
        raise ValueError(
            f"global batch {global_batch} does not split over {process_count} processes"
        )
    per_process = global_batch // process_count
    return slice(process_index * per_process, (process_index + 1) * per_process)


def global_array_from_process_local(
    local_data: Any,
    mesh: Mesh,
    spec: PartitionSpec,
    *,
    global_shape: Sequence[int] | None = None,
) -> jax.Array:
    """Assembles one global array from each process's share of the data.

    ``local_data`` holds only the rows this process's devices own (for a batch
    sharded along axis 0, ``data[process_batch_slice(n)]``); every process
    calls this with its own share and the same ``mesh``/``spec``. With one
    process this is ``jax.device_put(local_data, NamedSharding(mesh, spec))``.

    Args:
      local_data: numpy-convertible array, this process's block of the global
        array; the shape of a dimension not split across processes equals the
        global one.
      mesh: mesh over all global devices.
      spec: partition spec of the global array on ``mesh``.
      global_shape: the global shape; inferred from ``local_data`` when None.

    Returns:
      A ``jax.Array`` of ``global_shape`` with sharding ``NamedSharding(mesh,
      spec)``.
    """
    sharding = NamedSharding(mesh, spec)
    local = np.asarray(local_data)
    shape = None if global_shape is None else tuple(int(s) for s in global_shape)
    return jax.make_array_from_process_local_data(sharding, local, shape)


def to_host(tree: Any) -> Any:
    """Copies a pytree of (possibly multi-process) arrays to numpy on every host.

    A fully addressable array (one process, or data this process holds) is read
    directly; an array spread over several processes is gathered with
    ``multihost_utils.process_allgather(tiled=True)``, a collective that every
    process must call.

    Args:
      tree: pytree of ``jax.Array`` (any sharding) or numpy arrays.

    Returns:
      The same pytree of ``np.ndarray`` holding the full global values.
    """

    def one(x: Any) -> np.ndarray:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)
