"""Pydantic models of the typed JSON API (`/v1/*`): they are the OpenAPI schema, so keep them precise.

Images travel as a base64 PNG/JPEG string (optionally a ``data:image/...;base64,`` URL) or as nested
lists ``[H][W][3]`` of integers 0–255. The OpenVLA-compatible `/act` route does not use these models (its
body is `json_numpy`-encoded; see `serving.images.decode_act_payload`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Mode", "ActRequest", "ActBatchRequest", "Timing", "ActResponse", "ActBatchResponse", "ErrorResponse",
    "BatchingStats", "HealthResponse", "CriticInfo", "ModelInfo", "Limits", "MetadataResponse",
    "EpisodeStartRequest", "EpisodeStartResponse", "EpisodeEndRequest", "EpisodeUploadRequest", "EpisodeStored",
    "EpisodeSummary", "VersionStats", "EpisodeListResponse", "ReloadResponse", "MAX_EPISODE_ID_CHARS",
    "MAX_INSTRUCTION_CHARS", "MAX_NUM_SAMPLES", "MAX_TOP_K", "MAX_STEPS", "MAX_TEMPERATURE", "MAX_VECTOR_DIM",
]

Mode = Literal["greedy", "sample", "refined"]

MAX_INSTRUCTION_CHARS = 2048
MAX_NUM_SAMPLES = 256
MAX_TOP_K = 256
MAX_STEPS = 100
MAX_TEMPERATURE = 10.0
MAX_VECTOR_DIM = 4096             # proprio / state entries
MAX_EPISODE_ID_CHARS = 64
MAX_EPISODE_ROWS = 100_000        # list lengths in episode bodies (the server's --max-episode-steps applies too)

Pixel = Annotated[int, Field(strict=True, ge=0, le=255)]
PixelRow = Annotated[list[Annotated[list[Pixel], Field(min_length=3, max_length=3)]], Field(min_length=1)]
NestedImage = Annotated[list[PixelRow], Field(min_length=1, description="uint8 RGB image as nested lists [H][W][3]")]
EncodedImage = Annotated[str, Field(min_length=1, description="base64 PNG or JPEG (a data: URL is accepted too)")]


class _Strict(BaseModel):
    """Request models: unknown keys are errors, and nothing is coerced (`"5"`, `true` or `5.0` is not an int;
    a string or a bool is not a number)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ActRequest(_Strict):
    """One observation and how to act on it."""

    image: EncodedImage | NestedImage = Field(description="RGB camera frame: base64 PNG/JPEG string or "
                                                          "nested lists [H][W][3] of integers 0-255")
    instruction: str = Field(min_length=1, max_length=MAX_INSTRUCTION_CHARS, examples=["pick up the red block"])
    unnorm_key: str | None = Field(default=None, description="dataset whose statistics un-normalise the action; "
                                                             "optional when the model has one")
    mode: Mode = Field(default="greedy", description="greedy: the VLA's argmax action (as OpenVLA); sample: "
                       "sampled action(s); refined: PA-RL action optimisation with the served critic")
    num_samples: int | None = Field(default=None, ge=1, le=MAX_NUM_SAMPLES,
                                    description="sample: actions to draw (default 1); refined: candidates "
                                                "sampled besides the greedy action (default 16)")
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K,
                              description="refined only: candidates kept for gradient ascent (default 10)")
    steps: int | None = Field(default=None, ge=0, le=MAX_STEPS,
                              description="refined only: gradient-ascent steps on the critic (default 10)")
    temperature: float | None = Field(default=None, ge=0.0, le=MAX_TEMPERATURE,
                                      description="sample/refined: sampling temperature (default 1.0; 0 = argmax)")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1,
                             description="sample/refined: draw this request's samples from a generator seeded with "
                                         "it (reproducible, whatever it is batched with); default: unseeded")
    proprio: list[float] | None = Field(default=None, min_length=1, max_length=MAX_VECTOR_DIM,
                                        description="proprioceptive vector (e.g. end-effector pose + gripper); "
                                                    "required by refined mode when the critic reads proprio, with "
                                                    "length /v1/metadata critic.proprio_dim; ignored otherwise")
    state: list[float] | None = Field(default=None, min_length=1, max_length=MAX_VECTOR_DIM,
                                      description="low-dimensional (e.g. simulator) state; required by refined mode "
                                                  "when the critic reads it, with length /v1/metadata "
                                                  "critic.state_dim; ignored otherwise")
    episode_id: str | None = Field(default=None, min_length=1, max_length=MAX_EPISODE_ID_CHARS,
                                   description="record this observation (image, instruction, proprio, state) and the "
                                               "answered action as the next step of this episode (POST "
                                               "/v1/episodes); unnorm_key defaults to the episode's")


class ActBatchRequest(_Strict):
    """Several observations answered together (they are batched with other clients' requests too)."""

    requests: list[ActRequest] = Field(min_length=1, max_length=256)


class Timing(BaseModel):
    queue_ms: float = Field(description="time waiting for a batch slot")
    inference_ms: float = Field(description="duration of the batched model call this request was part of")
    total_ms: float = Field(description="server time from request parsed to response built")
    batch_size: int = Field(description="rows in the batched model call")


class ActResponse(BaseModel):
    action: list[float] = Field(description="the action in robot units (un-normalised), length = action dim")
    mode: Mode
    unnorm_key: str
    q: float | None = Field(default=None, description="refined: Q(s, action), the mean (or min, as the critic's "
                                                      "operator settings say) over the critic's heads")
    greedy_q: float | None = Field(default=None, description="refined: Q of the greedy action (a candidate too)")
    candidate_q: list[float] | None = Field(default=None, description="refined: Q of the refined top-k candidates")
    samples: list[list[float]] | None = Field(default=None, description="sample: all drawn actions "
                                                                        "(action = samples[0])")
    policy_version: int = Field(description="the served policy version that computed this action (0: the "
                                            "checkpoint the server started with)")
    step: int | None = Field(default=None, description="with episode_id: the 0-based index of the step this "
                                                       "request was recorded as")
    timing: Timing


class ActBatchResponse(BaseModel):
    results: list[ActResponse]


class ErrorResponse(BaseModel):
    error: str = Field(description="machine-readable kind, e.g. invalid_request, unauthorized, internal_error")
    message: str = Field(description="what is wrong and how to fix it")
    details: list[str] | None = None


class BatchingStats(BaseModel):
    max_batch_size: int
    max_wait_ms: float
    batches: int = Field(description="batched model calls so far")
    rows: int = Field(description="rows (requests) processed so far")
    mean_batch_size: float
    largest_batch: int
    histogram: dict[str, int] = Field(description="batch size -> number of model calls")
    queue_depth: int
    failures: int = Field(description="model calls that raised")


class HealthResponse(BaseModel):
    status: Literal["ok"]
    uptime_s: float
    batching: BatchingStats


class CriticInfo(BaseModel):
    loaded: bool
    path: str | None = None
    image_size: int | None = None
    num_q_heads: int | None = None
    action_dim: int | None = None
    instruction: bool | None = Field(default=None, description="whether the critic reads the instruction")
    proprio_dim: int | None = Field(default=None, description="length of the 'proprio' a refined request must send "
                                                              "(0: not read)")
    state_dim: int | None = Field(default=None, description="length of the 'state' a refined request must send "
                                                            "(0: not read)")
    improvement: dict[str, Any] | None = Field(default=None, description="the refined mode's PA-RL improvement "
                                               "operator settings (saved with the critic, then the server's flags); "
                                               "num_samples / top_k / num_steps are the request defaults")


class ModelInfo(BaseModel):
    name: str
    checkpoint: str | None
    parameters: int
    image_sizes: list[int]
    action_dims: dict[str, int] = Field(description="unnorm_key -> action dimension")
    device: str
    dtype: str


class Limits(BaseModel):
    max_request_bytes: int
    max_image_pixels: int
    max_batch_items: int
    max_num_samples: int
    api_key_required: bool


class MetadataResponse(BaseModel):
    model: ModelInfo
    policy_version: int = Field(description="the version new requests are served by (0: the start checkpoint)")
    stored_episodes: int | None = Field(description="episodes in the replay store (None: started without "
                                                    "--episodes)")
    action_dim: int
    unnorm_keys: list[str]
    default_unnorm_key: str | None
    modes: list[Mode]
    critic: CriticInfo
    versions: dict[str, str]
    limits: Limits
    batching: BatchingStats


# ---- episodes (`serving.episodes`) ---------------------------------------------------------------------------------
Metadata = dict[str, Any]
Vector = Annotated[list[float], Field(min_length=1, max_length=MAX_VECTOR_DIM)]


class EpisodeStartRequest(_Strict):
    """Open an episode: its act requests are then recorded as its steps."""

    instruction: str = Field(min_length=1, max_length=MAX_INSTRUCTION_CHARS, examples=["pick up the red block"])
    unnorm_key: str | None = Field(default=None, description="dataset statistics of the episode's actions "
                                                             "(optional when the model has one)")
    metadata: Metadata | None = Field(default=None, description="any JSON object, stored with the episode")


class EpisodeStartResponse(BaseModel):
    episode_id: str


class EpisodeEndRequest(_Strict):
    """How the episode went: `success` (sparse rewards −1 per step, 0 on the last step of a success) and/or
    `rewards` (one per step)."""

    success: bool | None = None
    rewards: list[float] | None = Field(default=None, min_length=1, max_length=MAX_EPISODE_ROWS,
                                        description="one reward per recorded step (replaces the sparse rewards)")
    executed_actions: list[Vector] | None = Field(
        default=None, min_length=1, max_length=MAX_EPISODE_ROWS,
        description="the actions the robot really executed, one per step, in robot units (human or safety-layer "
                    "overrides); stored instead of the served ones")
    final_image: EncodedImage | NestedImage | None = Field(default=None, description="the observation after the "
                                                                                     "last step (same size)")
    final_proprio: Vector | None = Field(default=None, description="with final_image, when the steps carry proprio")
    final_state: Vector | None = Field(default=None, description="with final_image, when the steps carry state")


class EpisodeUploadRequest(_Strict):
    """A whole episode collected elsewhere (teleoperation, another controller): one image and action per step."""

    instruction: str = Field(min_length=1, max_length=MAX_INSTRUCTION_CHARS)
    images: list[EncodedImage | NestedImage] = Field(min_length=1, max_length=MAX_EPISODE_ROWS)
    actions: list[Vector] = Field(min_length=1, max_length=MAX_EPISODE_ROWS,
                                  description="the executed actions in robot units, one per image")
    success: bool | None = None
    rewards: list[float] | None = Field(default=None, min_length=1, max_length=MAX_EPISODE_ROWS)
    proprio: list[Vector] | None = Field(default=None, min_length=1, max_length=MAX_EPISODE_ROWS)
    state: list[Vector] | None = Field(default=None, min_length=1, max_length=MAX_EPISODE_ROWS,
                                       description="a low-dimensional state per image (what a critic may read)")
    unnorm_key: str | None = None
    metadata: Metadata | None = None
    final_image: EncodedImage | NestedImage | None = None
    final_proprio: Vector | None = None
    final_state: Vector | None = None


class EpisodeStored(BaseModel):
    episode_id: str
    steps: int
    stored: Literal[True]


class EpisodeSummary(BaseModel):
    episode_id: str
    steps: int
    success: bool | None
    policy_version: int | None = Field(description="the version that served most of its steps (None: uploaded)")


class VersionStats(BaseModel):
    episodes: int
    labelled: int = Field(description="episodes ended with a success label")
    successes: int
    success_rate: float | None = Field(description="successes / labelled")


class EpisodeListResponse(BaseModel):
    count: int = Field(description="episodes in the replay store")
    open: int = Field(description="episodes open now (not yet ended)")
    episodes: list[EpisodeSummary]
    by_policy_version: dict[str, VersionStats]


class ReloadResponse(BaseModel):
    policy_version: int
    loaded: bool
    message: str
