"""The typed run config: one validated object describes one SimCLR training run.

Defaults are the recipe ``official_v1_cifar10`` (``core/recipes/``: the first README's CIFAR-10
command of google-research/simclr, with the paper's Appendix B.9; the paper's numbers are in
``reports/paper_reference.yaml``): ResNet-18 with the CIFAR stem, crop+flip then color distortion
of strength 0.5 and no blur, a Linear-BN-ReLU-Linear head to 128-d, NT-Xent with temperature
0.5, LARS with base lr 1.0 scaled linearly with the batch (lr = 1.0 * B / 256), weight decay
1e-6, 10 warmup epochs then cosine decay, batch 512, 1000 epochs. Every field added since keeps
the old behaviour as its default (``ADDED_LATER``).

Every field is validated (unknown keys are rejected), so a typo in a config
file is an error, not a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from core import registry
from core.dotted import get_path, set_existing

TRANSFORMS: tuple[str, ...] = registry.BUILTIN_TRANSFORMS
"""The seven transformations of the paper's Figure 5, by the names used in configs."""


def _named(kind: str) -> AfterValidator:
    """A component name that ``core.registry`` resolves: a built-in, an installed plugin or
    ``module.path:attribute`` (the error lists what there is, or carries the plugin's import error)."""
    return AfterValidator(lambda name: registry.check_name(kind, name))


TransformName = Annotated[str, _named("transform")]
PluginParams = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Strict):
    """Generated striped images: the class is the stripe orientation, colour is a nuisance."""

    num_classes: int = Field(4, ge=2)
    train_size: int = Field(512, ge=2)
    test_size: int = Field(256, ge=2)
    image_size: int = Field(32, ge=8)
    channels: Literal[1, 3] = 3


class DataConfig(_Strict):
    """Where the images come from and how many of them to use."""

    source: Literal["cifar10", "cifar100", "stl10", "imagefolder", "idx", "tarball", "synthetic"] = "cifar10"
    root: Path | None = Field(
        Path("data"),
        description=(
            "cifar10/cifar100/stl10: a torchvision dataset root; imagefolder: a folder with "
            "train/ and test/ (or val/) class subfolders; idx: a folder of MNIST-layout IDX "
            "files; tarball: a .tar.gz of an imagefolder tree. Unused for synthetic."
        ),
    )
    download: bool = Field(False, description="torchvision sources only: download when missing.")
    image_size: int | None = Field(
        None, ge=8, description="Resize (shorter side) and center-crop decoded images to this size."
    )
    subset: int | None = Field(None, ge=2, description="Stratified, seeded subset of the training split.")
    test_subset: int | None = Field(None, ge=2, description="Stratified, seeded subset of the test split.")
    stl10_unlabeled: bool = Field(False, description="stl10: add the 100k unlabeled images to pretraining.")
    classes: list[str] | str | None = Field(
        None,
        description=(
            "imagefolder/tarball: use only these class folders, e.g. [n01440764, n01443537], a text "
            "file with one class name per line (# comments allowed) or a built-in list: imagenet100. "
            "Labels follow the sorted names, as in torchvision's ImageFolder, whatever the list's order."
        ),
    )
    cache_dir: Path = Field(
        Path("~/.cache/simclr-ablations"), description="Decoded uint8 arrays are cached here."
    )
    in_memory: Literal["auto", True, False] = Field(
        "auto",
        description=(
            "true: read the stored arrays into memory (on the GPU when training there); false: "
            "memory-map them and read each batch from the files; auto: in memory when the stored "
            "images fit data.memory_budget_gb, memory-mapped otherwise. Results are identical."
        ),
    )
    memory_budget_gb: float | None = Field(
        None,
        gt=0,
        description=(
            "in_memory auto: the most image bytes (GB, 1e9) held in memory. Default: half of the host's "
            "available memory at start, and on CUDA also at most a quarter of the GPU's memory."
        ),
    )
    synthetic: SyntheticConfig = SyntheticConfig()

    @field_validator("classes")
    @classmethod
    def _classes_named(cls, v: list[str] | str | None) -> list[str] | str | None:
        if isinstance(v, list) and (not v or not all(isinstance(c, str) and c.strip() for c in v)):
            raise ValueError("expected a non-empty list of class names")
        if isinstance(v, str) and not v.strip():
            raise ValueError("expected a list of class names, a file of them or a built-in name (imagenet100)")
        return v

    @model_validator(mode="after")
    def _root_needed(self) -> "DataConfig":
        if self.source != "synthetic" and self.root is None:
            raise ValueError(f"data.root is required for source '{self.source}'")
        return self


class CropConfig(_Strict):
    """Inception-style random resized crop, always followed by a random horizontal flip."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    sampler: Literal["torchvision", "tf"] = Field(
        "torchvision",
        description=(
            "How a crop box is drawn from scale (area fraction) and ratio. torchvision: area uniform, "
            "ratio log-uniform, 10 tries, then a centre crop. tf: TensorFlow's "
            "sample_distorted_bounding_box as google-research/simclr calls it (ratio uniform, height "
            "uniform between the area bounds, at least 10% of the image, 100 tries, then the whole image)."
        ),
    )
    interpolation: Literal["bilinear", "bicubic"] = Field(
        "bilinear",
        description=(
            "Resampling of the crop. bilinear: torchvision's default. bicubic: as google-research/simclr "
            "resizes its crops (here torch's antialiased bicubic, Keys a=-0.5, in both loaders)."
        ),
    )
    size: int | None = Field(
        None,
        ge=8,
        description=(
            "Side of the crop's output, the training resolution (default: the stored size), e.g. 224 "
            "from a store at 256. Evaluation then sees the central 87.5% resized to it (SimCLR's "
            "ImageNet protocol); at the stored size it sees the stored images (its CIFAR protocol)."
        ),
    )

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered_positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"expected 0 < low <= high, got {list(v)}")
        return v

    @field_validator("scale")
    @classmethod
    def _area_at_most_one(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[1] > 1:
            raise ValueError(f"crop area fraction must be <= 1, got {list(v)}")
        return v


class ColorConfig(_Strict):
    """Colour distortion of strength s: jitter(0.8s, 0.8s, 0.8s, 0.2s) with p, then grayscale with p."""

    strength: float = Field(0.5, ge=0)
    jitter_p: float = Field(0.8, ge=0, le=1)
    grayscale_p: float = Field(0.2, ge=0, le=1)
    brightness: Literal["multiplicative", "additive"] = Field(
        "multiplicative",
        description=(
            "multiplicative: x * U(1-0.8s, 1+0.8s) (torchvision, google-research/simclr v2); "
            "additive: x + U(-0.8s, 0.8s) (tf.image.random_brightness, google-research/simclr v1)."
        ),
    )


class BlurConfig(_Strict):
    """Gaussian blur with p; sigma uniform in a range; kernel side a fraction of the image side."""

    p: float = Field(0.5, ge=0, le=1)
    sigma: tuple[float, float] = (0.1, 2.0)
    kernel_fraction: float = Field(0.1, gt=0, le=1)


class CutoutConfig(_Strict):
    """One square of zeros at a uniformly random centre (DeVries & Taylor 2017); side as a fraction."""

    size_fraction: float = Field(0.5, gt=0, le=1)


class NoiseConfig(_Strict):
    """Additive Gaussian noise on [0,1] pixels; std drawn per image uniformly from the range."""

    std: tuple[float, float] = (0.0, 0.1)


class RotateConfig(_Strict):
    """Rotation by a multiple of 90 degrees, drawn uniformly from ``angles``."""

    angles: list[Literal[0, 90, 180, 270]] = [90, 180, 270]


class AugmentConfig(_Strict):
    """Which transformations make a view, in order, and how each is parameterised.

    ``mode: symmetric`` (SimCLR's default): both views are ``ops`` applied independently.
    ``mode: asymmetric`` (the paper's Figure 5 setting): every image is first cropped and
    resized once (the same crop for both views), then ``ops`` go to the first view only and
    the second view stays that shared crop.
    """

    ops: list[TransformName] = Field(
        ["crop", "color"],
        description="Transformations by name: the built-in seven, an installed plugin, or module.path:attribute.",
    )
    mode: Literal["symmetric", "asymmetric"] = "symmetric"
    crop: CropConfig = CropConfig()
    color: ColorConfig = ColorConfig()
    blur: BlurConfig = BlurConfig()
    cutout: CutoutConfig = CutoutConfig()
    noise: NoiseConfig = NoiseConfig()
    rotate: RotateConfig = RotateConfig()
    params: dict[str, PluginParams] = Field(
        {}, description="A plugin transformation's parameters by its name: augment.params.NAME.KEY."
    )


class ModelConfig(_Strict):
    """Encoder f and projection head g."""

    encoder: Annotated[str, _named("encoder")] = Field(
        "resnet18",
        description="resnet18, resnet34, resnet50, resnet_small, an installed plugin or module.path:attribute.",
    )
    params: PluginParams = Field({}, description="A plugin encoder's parameters (model.params.KEY).")
    cifar_stem: bool = Field(True, description="3x3 stride-1 first conv and no max-pool (paper B.9).")
    width: int = Field(16, ge=4, description="resnet_small only: channels of its first stage.")
    head: Literal["none", "linear", "nonlinear"] = "nonlinear"
    head_dim: int = Field(128, ge=1, description="Output dimension of z (ignored for head: none).")
    head_hidden_dim: int | None = Field(None, ge=1, description="Hidden width; default = feature dim.")
    head_hidden_bn: bool = Field(
        True,
        description=(
            "nonlinear only: BatchNorm after each hidden Linear (which then has no bias); "
            "false: Linear with bias, ReLU (solo-learn)."
        ),
    )
    head_layers: int = Field(
        2,
        ge=2,
        description=(
            "nonlinear only: Linear layers of the head (2: Linear-BN-ReLU-Linear; each more adds Linear-BN-ReLU)."
        ),
    )
    head_bn_out: Literal["none", "scale", "affine"] = Field(
        "none",
        description=(
            "BatchNorm on the head's output z (its last Linear then has no bias). scale: a learned scale, "
            "no shift (google-research/simclr); affine: scale and shift (lightly). Not for head: none."
        ),
    )
    zero_init_residual: bool = Field(
        False,
        description="Start the last BatchNorm scale of every residual block at 0 (google-research/simclr's ResNet).",
    )

    @model_validator(mode="after")
    def _head_output_norm(self) -> "ModelConfig":
        if self.head == "none" and self.head_bn_out != "none":
            raise ValueError("head_bn_out needs a projection head (head: linear or nonlinear), not head: none")
        return self


class LossConfig(_Strict):
    """The contrastive objective (the paper's Table 2)."""

    name: Annotated[str, _named("loss")] = Field(
        "nt_xent", description="nt_xent, nt_logistic, margin_triplet, an installed plugin or module.path:attribute."
    )
    params: PluginParams = Field({}, description="A plugin loss's parameters (loss.params.KEY).")
    temperature: float = Field(0.5, gt=0)
    normalize: bool = Field(True, description="l2-normalize z (cosine similarity).")
    margin: float = Field(0.4, ge=0, description="margin_triplet only.")
    semi_hard: bool = Field(False, description="Keep only negatives less similar than the positive.")
    negatives: Literal["both_views", "one_view"] = Field(
        "both_views",
        description="one_view: negatives come from the other view only (paper footnote 8, Table 4).",
    )
    reduction: Literal["mean", "sum_directions"] = Field(
        "mean",
        description=(
            "mean: the mean over all 2N anchors. sum_directions: google-research/simclr's objective, "
            "view 1 against view 2 plus view 2 against view 1, each a mean over N (twice the mean): "
            "the gradient doubles, which under LARS doubles the step of biases and BatchNorm "
            "parameters and halves weight decay's weight against the gradient."
        ),
    )


class OptimConfig(_Strict):
    """Optimizer, learning-rate scaling and the warmup + cosine schedule (stepped per iteration)."""

    name: Literal["lars", "sgd", "adam"] = "lars"
    lr: float = Field(1.0, gt=0, description="Base lr; the effective lr applies lr_scaling to it.")
    lr_scaling: Literal["linear", "sqrt", "none"] = Field(
        "linear", description="linear: lr*B/256; sqrt: lr*sqrt(B); none: lr."
    )
    weight_decay: float = Field(1e-6, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    lars_eta: float = Field(0.001, gt=0)
    lars_clip_lr: bool = Field(
        False,
        description=(
            "LARS only: a layer's rate is min(eta*||p||/||g'||, lr) instead of lr*eta*||p||/||g'|| "
            "(solo-learn's clip_lr, NVIDIA's LARC clip mode)."
        ),
    )
    exclude_bias_bn: bool = Field(
        True,
        description=(
            "Biases and BatchNorm parameters get no weight decay and, under LARS, no trust ratio "
            "(google-research/simclr). false: every parameter is decayed (and adapted) alike (lightly's SGD)."
        ),
    )
    warmup_epochs: float = Field(10, ge=0)


CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)


def torch_compile_mode(compile_: bool | str) -> str | None:
    """The torch.compile mode ``train.compile`` names: None when off, 'default' for true."""
    if not compile_:
        return None
    return "default" if compile_ is True else str(compile_)


class TrainConfig(_Strict):
    """Length, batch, seed and the numerics of the run."""

    epochs: int = Field(1000, ge=1)
    batch_size: int = Field(512, ge=2, description="Images per step (2x as many views).")
    seed: int = 0
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:1, ...")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description=(
            "auto: bf16 autocast where the device computes bf16 natively (CUDA; a CPU with AVX512_BF16 or AMX), "
            "else fp32."
        ),
    )
    channels_last: bool | None = Field(
        None, description="Default: on for CUDA and for a CPU under bf16; NCHW for fp32 on CPU."
    )
    compile: bool | CompileMode = Field(
        False,
        description=(
            "torch.compile the model (encoder and head): true = mode 'default' (fuses kernels); "
            "'reduce-overhead' also replays CUDA graphs (fewer kernel launches: for steps bound by the host)."
        ),
    )
    loader: Literal["batched", "torchvision"] = Field(
        "batched",
        description=(
            "batched: augment whole batches on the training device (core.augment); torchvision: the "
            "per-image torchvision.transforms.v2 pipeline in DataLoader workers (fallback and baseline)."
        ),
    )
    loader_workers: int = Field(2, ge=0, description="loader: torchvision only: DataLoader worker processes.")
    sync_bn: bool | None = Field(
        None,
        description=(
            "Global BN (paper sec. 2): BatchNorm statistics over the global batch of every process. "
            "Default: on when the run spans several processes (torchrun); no effect in one process."
        ),
    )
    log_every: int = Field(20, ge=1, description="Steps between loss reads (each read syncs the device).")
    checkpoint: bool = True
    progress: bool = True

    @field_validator("compile")
    @classmethod
    def _one_spelling_of_default(cls, v: bool | str) -> bool | str:
        """``default`` is torch.compile's default mode, which ``true`` already names: one value, so
        a study's identity does not change with the spelling."""
        return True if v == "default" else v


class EvalConfig(_Strict):
    """kNN monitor during training and the final linear evaluation."""

    knn_every: int = Field(1, ge=0, description="Epochs between kNN evaluations; 0 = only at the end.")
    knn_k: int | list[int] = Field(
        200,
        description=(
            "Neighbours of the kNN monitor; a list, e.g. [200, 10], reports each: the first as knn_top1 "
            "and knn_top5, the others as knn_top1_k10, knn_top5_k10."
        ),
    )
    knn_temperature: float = Field(0.1, gt=0)
    linear: bool = True
    linear_protocol: Literal["offline_standardized", "official"] = Field(
        "offline_standardized",
        description=(
            "offline_standardized: the linear classifier trains on precomputed features of the unaugmented "
            "training images, standardised with their mean and std. official: as google-research/simclr's "
            "linear evaluation (its README's CIFAR-10 command), on features of a fresh random crop and "
            "flip of every training image at every epoch (augment.crop's settings), not standardised; "
            "the test images as stored. Both: zero-init, SGD Nesterov 0.9, no weight decay, cosine."
        ),
    )
    linear_epochs: int = Field(100, ge=1)
    linear_batch_size: int = Field(512, ge=1)
    linear_lr: float = Field(0.1, gt=0, description="Scaled linearly with linear_batch_size / 256.")
    batch_size: int = Field(1024, ge=1, description="Batch for feature extraction.")

    @field_validator("knn_k")
    @classmethod
    def _ks(cls, v: int | list[int]) -> int | list[int]:
        """One k is an int whichever way it is written, so [200] and 200 are the same config."""
        ks = [v] if isinstance(v, int) else list(v)
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"expected k >= 1 (one, or a non-empty list), got {v}")
        if len(set(ks)) != len(ks):
            raise ValueError(f"each k once, got {v}")
        return ks[0] if len(ks) == 1 else ks

    def knn_ks(self) -> list[int]:
        """Every k, the first (reported as knn_top1) first."""
        return [self.knn_k] if isinstance(self.knn_k, int) else list(self.knn_k)


class RunConfig(_Strict):
    """Everything one SimCLR training run needs; nothing about studies, MLflow or Optuna."""

    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    def effective_lr(self) -> float:
        """The learning rate after batch-size scaling (paper sec 2.3 and Appendix B.1)."""
        b = self.train.batch_size
        if self.optim.lr_scaling == "linear":
            return self.optim.lr * b / 256
        if self.optim.lr_scaling == "sqrt":
            return self.optim.lr * b**0.5
        return self.optim.lr


def default_config() -> RunConfig:
    """The paper's CIFAR-10 defaults (data source still has to be pointed at a root)."""
    return RunConfig()


def apply_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a new validated config with dotted-path overrides applied ({"loss.temperature": 0.1});
    KeyError names a path that is no field."""
    data = config.model_dump(mode="python")
    for dotted, value in overrides.items():
        set_existing(data, dotted, value)
    return RunConfig.model_validate(data)


ADDED_LATER: dict[str, Any] = {
    "data.classes": None,
    "augment.crop.size": None,
    "augment.crop.sampler": "torchvision",
    "augment.crop.interpolation": "bilinear",
    "augment.color.brightness": "multiplicative",
    "model.head_layers": 2,
    "model.head_hidden_bn": True,
    "model.head_bn_out": "none",
    "model.zero_init_residual": False,
    "loss.reduction": "mean",
    "optim.lars_clip_lr": False,
    "optim.exclude_bias_bn": True,
    "eval.linear_protocol": "offline_standardized",
    "augment.params": {},
    "model.params": {},
    "loss.params": {},
}
"""Fields added after studies and run directories had been recorded, each with the value that
behaves as before it existed. While a field holds that value it is not part of a config's identity
(a study's fingerprint, a run directory's name), so adding it changed no existing study."""

PLACEMENT_ONLY = ("data.in_memory", "data.memory_budget_gb")
"""Where the images are held while training (memory or a memory map): the results are the same
either way, so these are never part of a config's identity."""


def identity_exclusions(config: RunConfig, also: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """A nested ``model_dump(exclude=...)`` spec of the fields that are not part of ``config``'s
    identity: the placement-only ones, those added later while at their defaults, and ``also``
    (section -> field names a caller leaves out too, e.g. progress bars)."""
    spec: dict[str, Any] = {}
    dumped = config.model_dump(mode="python")
    added = [d for d, default in ADDED_LATER.items() if get_path(dumped, d) == default]
    extra = [f"{section}.{name}" for section, names in (also or {}).items() for name in names]
    for dotted in (*PLACEMENT_ONLY, *added, *extra):
        *parents, last = dotted.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = True
    return spec
