"""RouterConfig: one flat, typed config for training and routing.

Flat so that `to_flat_dict()` feeds `mlflow.log_params` and Optuna can tune any field by name
(`with_overrides(policy_balanced_w_cost=0.3)`). Loaded from YAML (`data/router.yaml`); overrides are
type-checked as in nanoGPT's configurator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferroute.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "data" / "router.yaml"


@dataclass(frozen=True, slots=True)
class RouterConfig:
    seed: int = 0
    # --- features ---
    embedder: str = "static"  # "static" (distilled MiniLM token table) or "minilm" (contextual)
    static_source: str = "distill"  # "distill" (MiniLM outputs per token) or "input" (fast, weaker)
    static_dim: int = 256  # PCA dimension of the distilled static table
    max_chars: int = 4000  # text is cut (head + tail) to this before tokenizing
    max_tokens: int = 512  # token cap for the embedders
    torch_threads: int = 1  # torch intra-op threads for the "minilm" embedder
    # --- task classifier ---
    clf_c: float = 4.0  # inverse L2 strength of the logistic regression
    clf_hash_features: int = 2**18  # hashed word/char n-gram features next to the embedding
    clf_calibration: str = "temperature"  # "temperature" or "none"
    clf_char_features: int = 0  # hashed char 2-4-grams (0 = none; +0.01 CV macro-F1, p50 x6)
    clf_balanced: bool = True  # class weights inverse to frequency (rare task types count)
    clf_refit_all: bool = True  # refit on every prompt after calibrating the temperature
    clf_max_per_class: int = 3000  # cap per task class of the benchmark labels (real prompts: all)
    # label datasets of real user prompts (comma-separated `dataset` values): they carry
    # clf_real_share of the classifier's loss and the temperature is calibrated on them
    clf_real_datasets: str = "autoj_scenarios,autoj_pairwise,autoj_critiques"
    clf_real_share: float = 0.5
    clf_bank_size: int = 2000  # training embeddings kept for the out-of-distribution term (0: off)
    # self-training on unlabelled real prompts (ShareGPT; inferroute.training.fit_task_classifier):
    # the pseudo-labelled prompts' share of the loss (taken from the benchmarks' share; 0: off)
    # and the calibrated confidence a prompt needs to be pseudo-labelled
    clf_pseudo_share: float = 0.0
    clf_pseudo_min_conf: float = 0.7
    # --- fine-tuned MiniLM task classifier (inferroute.encoder): when on, it gives the routing
    # decision's task and confidence; the static classifier above still feeds the quality models ---
    task_encoder: bool = True
    enc_epochs: int = 2
    enc_max_len: int = 64  # tokens read per prompt
    enc_tail: int = 0  # of those, from the end of a longer prompt (0: the prompt's start only)
    enc_batch_size: int = 32
    enc_lr: float = 5e-5  # AdamW, the encoder's (10% warm-up, then linear decay)
    enc_head_lr: float = 2e-3  # the linear head's
    enc_max_per_class: int = 100  # benchmark labels per task it is fine-tuned on (real: all)
    enc_benchmark_weight: float = 0.3  # a benchmark prompt's loss weight (a real prompt's is 1)
    enc_calib_frac: float = 0.2  # real training prompts held back to fit its temperature
    enc_train_threads: int = 2  # torch threads while fine-tuning
    enc_threads: int = 2  # ONNX Runtime threads per routing call (they sleep between calls)
    # the static classifier's weight in the routing blend, (1 - w) * encoder + w * static (0: the
    # encoder alone); the blend's temperature is fitted on the encoder's calibration prompts
    enc_static_weight: float = 0.3
    # the cascade: a prompt the static classifier is this sure of (calibrated, support included)
    # takes its probabilities and skips the encoder (> 1: every prompt runs the encoder)
    enc_skip_above: float = 0.8
    # --- quality model (task prior + kNN over scored prompts; see inferroute.scoring) ---
    knn_k: int = 50  # neighbours per model
    knn_power: float = 4.0  # neighbour weight = max(cosine, 0) ** power
    knn_kappa: float = 0.1  # weight of the task prior against the neighbours
    knn_dims: int = 128  # leading embedding dimensions the neighbour search uses (0 = all)
    knn_max_prompts: int = 0  # 0 = keep every scored prompt; >0 subsamples (tiny configs)
    prior_shrink: float = (
        20.0  # per-(model, task) means shrink to the model mean with this many rows
    )
    # score sources never trained on (comma-separated `dataset` values; see inferroute.training)
    train_exclude_datasets: str = "alpaca_eval1"
    # --- joint latent quality model (inferroute.latent), blended with the kNN estimate above ---
    quality_blend: float = 1.0  # weight of the latent model (1 = latent only, 0 = kNN only)
    lat_hidden: int = 64  # prompt latent dimension
    lat_epochs: int = 15
    lat_lr: float = 3e-3
    lat_weight_decay: float = 1e-4
    lat_weight_power: float = (
        0.0  # prompt weight 1 / n_models_scored ** power (0: every score once)
    )
    lat_weight_cap: float = 11.0  # >0: a prompt's scores weigh at most this much in all (0: off)
    lat_source_penalty: float = 1.0  # L2 on the per-(model, source) calibration offsets
    lat_source_terms: str = "zero"  # per-source offsets: "zero" (learned from 0), "mean", "none"
    lat_task_scale: float = 1.0  # scale of the task probabilities among the inputs
    # which task probabilities the quality models read (latent inputs, kNN task prior):
    # "router" (the routing decision's classifier) or "benchmark" (a second classifier fitted on the
    # benchmark labels only, saved with the router: real-prompt labels lack some benchmark tasks,
    # e.g. Auto-J has no `reasoning`, and shifted MT-Bench's task inputs; docs/evals.md)
    lat_task_source: str = "router"
    lat_members: int = 5  # ensemble of seeds
    # --- complexity ---
    complexity_alpha: float = 10.0  # ridge strength of the difficulty regressor
    complexity_bench_weight: float = 0.0  # benchmark failure rates' total weight vs the labels'
    complexity_simple_max_label: float = 0.0  # labels <= this are "simple" (FLASK level 1, easy)
    complexity_complex_min_label: float = 0.75  # labels >= this are "complex" (FLASK major+)
    # how the simple / complex cuts are placed on the labelled prompts (inferroute.difficulty):
    # "youden" (best separation, blind to how common each level is) or "prevalence" (as many
    # prompts called simple / complex as are labelled so)
    complexity_cut_rule: str = "youden"
    # --- cost / latency ---
    default_output_tokens: float = 300.0
    queue_penalty: float = 0.5  # latency *= 1 + queue_penalty * queue_depth
    # --- traffic preference term (inferroute.preferences: Bradley-Terry on the pool's models) ---
    pref_logit_scale: float = 4.0  # logits per unit of predicted quality (k)
    pref_l2: float = 1.0  # L2 on the per-model residual weights (pulls towards the base router)
    pref_w_vote: float = 1.0  # weight of a person's vote on a side-by-side pair
    pref_w_verdict: float = 0.5  # ... of a judge model's verdict (both orders agreed or tie)
    pref_w_feedback: float = 0.25  # ... of a thumbs up / down on one answer
    pref_embedding: bool = False  # the prompt embedding among the term's features
    pref_fit_scale: bool = True  # fit k to the traffic (pref_logit_scale: its prior)
    # --- policies (tuned by evals with Optuna; see inferroute.policy) ---
    policy_balanced_w_quality: float = 0.8
    policy_balanced_w_cost: float = 0.15
    policy_balanced_w_latency: float = 0.05
    policy_balanced_epsilon: float = 0.3  # quality slack (1.0 = no constraint)
    policy_quality_w_quality: float = 0.9
    policy_quality_w_cost: float = 0.1
    policy_quality_w_latency: float = 0.0
    policy_quality_epsilon: float = 0.01
    policy_cost_w_quality: float = 0.2
    policy_cost_w_cost: float = 0.8
    policy_cost_w_latency: float = 0.0
    policy_cost_epsilon: float = 0.3  # >= balanced's, so cost never spends more (inferroute.policy)
    policy_latency_w_quality: float = 0.05
    policy_latency_w_cost: float = 0.0
    policy_latency_w_latency: float = 0.95
    policy_latency_epsilon: float = 0.3
    # below this task confidence the policy decides on general (task-agnostic) quality
    low_confidence_threshold: float = 0.4

    def classifier_kwargs(self) -> dict[str, Any]:
        """`TaskClassifier.fit`'s keyword arguments (training and the evals' cross-validation)."""
        return {
            "c": self.clf_c,
            "n_hash": self.clf_hash_features,
            "calibration": self.clf_calibration,
            "seed": self.seed,
            "n_char": self.clf_char_features,
            "balanced": self.clf_balanced,
            "refit": self.clf_refit_all,
            "bank_size": self.clf_bank_size,
            "max_chars": self.max_chars,
        }

    def encoder_settings(self) -> Any:
        """`inferroute.encoder.fit`'s EncoderSettings."""
        from inferroute.encoder import EncoderSettings

        return EncoderSettings(
            epochs=self.enc_epochs,
            max_len=self.enc_max_len,
            tail=self.enc_tail,
            batch_size=self.enc_batch_size,
            lr=self.enc_lr,
            head_lr=self.enc_head_lr,
            benchmark_weight=self.enc_benchmark_weight,
            calib_frac=self.enc_calib_frac,
            threads=self.enc_train_threads,
            seed=self.seed,
        )

    def real_datasets(self) -> frozenset[str]:
        return frozenset(d.strip() for d in self.clf_real_datasets.split(",") if d.strip())

    def latent_kwargs(self) -> dict[str, Any]:
        """`LatentQualityModel.fit_ensemble`'s keyword arguments."""
        return {
            "members": self.lat_members,
            "seed": self.seed,
            "hidden": self.lat_hidden,
            "epochs": self.lat_epochs,
            "lr": self.lat_lr,
            "weight_decay": self.lat_weight_decay,
            "weight_power": self.lat_weight_power,
            "weight_cap": self.lat_weight_cap,
            "source_penalty": self.lat_source_penalty,
            "source_terms": self.lat_source_terms,
        }

    def to_flat_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def with_overrides(self, **overrides: Any) -> RouterConfig:
        known = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(known)}")
            current = getattr(self, key)
            if (
                isinstance(current, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if type(value) is not type(current):
                raise ConfigError(
                    f"config key {key!r} expects {type(current).__name__}, "
                    f"got {type(value).__name__}"
                )
            clean[key] = value
        return dataclasses.replace(self, **clean)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RouterConfig:
        return cls().with_overrides(**dict(data))

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> RouterConfig:
        import yaml

        with open(path or DEFAULT_CONFIG_PATH, encoding="utf-8") as fh:
            data: dict[str, Any] = yaml.safe_load(fh) or {}
        router_part: Mapping[str, Any] = data.get("router", data)
        return cls.from_mapping(router_part)


# Small and fast: for tests and quick experiments.
TINY = RouterConfig(
    static_source="input",
    static_dim=64,
    knn_max_prompts=3000,
    clf_max_per_class=150,
    clf_hash_features=2**14,
    lat_members=2,
    task_encoder=False,
)
