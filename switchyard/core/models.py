"""Model loading: `offline` by default, any LangChain provider by its `provider:model` string."""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable
from typing import Any

from langchain_core.language_models import BaseChatModel

from switchyard.core.errors import ModelConfigError
from switchyard.core.offline import OfflineChatModel

OFFLINE = "offline"
MODEL_ENV = "SWITCHYARD_MODEL"
MAX_TOKENS_ENV = "SWITCHYARD_MAX_TOKENS"
MAX_OUTPUT_TOKENS = 4096
"""Output tokens per call when neither the agent nor `SWITCHYARD_MAX_TOKENS` says: room for a
hosted model's answer, a reasoning model's thinking included."""
LOCAL_MAX_OUTPUT_TOKENS = 1024
"""The same for a model served on a user's own server (an OpenAI-compatible one other than
OpenAI's, Ollama): a small model that does not stop fills a 4,096-token context otherwise."""

# What each provider needs before a call can succeed, so a missing key is reported up front and by
# name instead of as the provider SDK's error at the first call.
_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "azure_openai": ("AZURE_OPENAI_API_KEY",),
    "google_genai": ("GOOGLE_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "mistralai": ("MISTRAL_API_KEY",),
    "fireworks": ("FIREWORKS_API_KEY",),
    "together": ("TOGETHER_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
}
_AWS_PROVIDERS = frozenset({"bedrock", "bedrock_converse"})
# Providers whose client takes `max_retries`: Switchyard retries in the graph (RetryPolicy), so the
# SDK's own retries are switched off to keep attempts from multiplying.
_SDK_RETRIES = frozenset(
    {"openai", "anthropic", "azure_openai", "groq", "mistralai", "deepseek", "xai", "fireworks"}
)

_cache: dict[Hashable, BaseChatModel] = {}
_cache_lock = threading.Lock()
_registered: dict[str, BaseChatModel] = {}
# The model string each loaded instance was loaded by, keyed by the instance's id. Each entry holds
# its instance, so an id cannot be reused by another object while it is in here.
_names: dict[int, tuple[BaseChatModel, str]] = {}


def register_chat_model(name: str, model: BaseChatModel) -> None:
    """Make a ready-made chat model instance loadable by name (e.g. a custom client or a test fake).

    `load_chat_model(name)` then returns this instance, whatever the parameters.
    """
    if not name.strip():
        raise ModelConfigError("a registered model needs a non-empty name")
    _registered[name] = model
    _names[id(model)] = (model, name)


def is_registered(name: str) -> bool:
    """Whether `name` was registered with `register_chat_model`."""
    return name in _registered


def unregister_chat_model(name: str) -> None:
    """Forget a model registered with `register_chat_model` (no error if it is not there)."""
    model = _registered.pop(name, None)
    if model is not None:
        _names.pop(id(model), None)


def clear_model_cache() -> None:
    """Forget every model loaded so far (the next `load_chat_model` builds a new instance)."""
    with _cache_lock:
        for model in _cache.values():
            _names.pop(id(model), None)
        _cache.clear()


def default_max_tokens(model: str | None = None) -> int:
    """Output tokens a call to `model` may generate when its agent sets no `max_tokens`.

    `SWITCHYARD_MAX_TOKENS`, else `LOCAL_MAX_OUTPUT_TOKENS` for a model on the user's own
    server, else `MAX_OUTPUT_TOKENS`: every call is bounded, so a model that does not stop (a
    small local model, say) cannot write until its context is full.

    Raises:
        ModelConfigError: `SWITCHYARD_MAX_TOKENS` is not a positive whole number.
    """
    text = os.environ.get(MAX_TOKENS_ENV, "").strip()
    if not text:
        provider = (model or "").partition(":")[0]
        local = provider == "ollama" or (provider == "openai" and custom_openai_endpoint({}))
        return LOCAL_MAX_OUTPUT_TOKENS if local else MAX_OUTPUT_TOKENS
    if not text.isdigit() or int(text) <= 0:
        raise ModelConfigError(
            f"{MAX_TOKENS_ENV}={text!r} must be a positive whole number of tokens, e.g. 1024"
        )
    return int(text)


def custom_openai_endpoint(params: dict[str, Any]) -> bool:
    """Whether an `openai:` model is served by some other OpenAI-compatible server.

    Such servers (llama.cpp's, llama-cpp-python, vLLM, Ollama, LM Studio) do not all read
    `max_completion_tokens`, the field langchain-openai sends; `max_tokens` they all read.
    """
    base = (
        params.get("base_url")
        or params.get("openai_api_base")
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("OPENAI_API_BASE")
    )
    return bool(base) and "api.openai.com" not in str(base)


def default_model() -> str:
    """The process-wide default model: `SWITCHYARD_MODEL`, else `offline`."""
    return os.environ.get(MODEL_ENV, "").strip() or OFFLINE


def split_model(model: str) -> tuple[str, str]:
    """Split `'provider:model'` into its parts (`'offline'` is its own provider).

    Raises:
        ModelConfigError: The string is empty or lacks a provider or a model name.
    """
    text = model.strip()
    if not text:
        raise ModelConfigError(
            "empty model string: use 'offline' or 'provider:model', e.g. 'openai:gpt-4o-mini'"
        )
    provider, sep, name = text.partition(":")
    if provider == OFFLINE:
        return OFFLINE, name or OFFLINE
    if not sep or not provider or not name:
        raise ModelConfigError(
            f"model {model!r} must be 'offline' or 'provider:model', e.g. 'openai:gpt-4o-mini' "
            "or 'bedrock_converse:anthropic.claude-3-5-sonnet-20240620-v1:0'"
        )
    return provider, name


def check_credentials(provider: str) -> None:
    """Fail fast, naming the variable to set, when a provider's credentials are missing.

    Raises:
        ModelConfigError: The provider's API key (or, for Bedrock, AWS credentials and region) is
            not available.
    """
    names = _CREDENTIALS.get(provider)
    if names and not any(os.environ.get(name) for name in names):
        raise ModelConfigError(
            f"provider {provider!r} needs credentials: set {' or '.join(names)} "
            f"(or use SWITCHYARD_MODEL=offline to run without a key)"
        )
    if provider in _AWS_PROVIDERS:
        import boto3  # langchain-aws depends on it

        session = boto3.Session()
        if session.get_credentials() is None:
            raise ModelConfigError(
                f"provider {provider!r} needs AWS credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or use SWITCHYARD_MODEL=offline)"
            )
        if session.region_name is None:
            raise ModelConfigError(
                f"provider {provider!r} needs an AWS region: set AWS_REGION or AWS_DEFAULT_REGION"
            )


def load_chat_model(model: str | None = None, **params: Any) -> BaseChatModel:
    """Load a chat model by name; instances are cached per (model, params).

    Args:
        model: `'offline'` (the embedded offline model; `'offline:NAME'` names it), or any
            `'provider:model'` string LangChain's `init_chat_model` accepts. `None` uses
            `SWITCHYARD_MODEL`, else `'offline'`.
        **params: Passed to the model (temperature, max_tokens, timeout, ...; for the offline
            model also latency_s and fail_on_calls).

    Returns:
        A LangChain chat model.

    Raises:
        ModelConfigError: Unknown provider, provider package not installed, or missing credentials;
            the message says what to set or install.

    Example:
        ```python
        model = load_chat_model("offline")
        model = load_chat_model("openai:gpt-4o-mini", temperature=0)
        ```
    """
    model = model or default_model()
    if model in _registered:
        return _registered[model]
    provider, name = split_model(model)
    key: Hashable | None
    try:  # an `openai:` client reads its server from the environment when it is built
        key = (provider, name, frozenset(params.items()), _endpoint_setting(provider))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _cache:
        return _cache[key]
    loaded = _load(provider, name, params)
    if key is not None:
        with _cache_lock:
            loaded = _cache.setdefault(key, loaded)
            _names[id(loaded)] = (loaded, model)
    return loaded


def _endpoint_setting(provider: str) -> tuple[str, ...]:
    if provider not in ("openai", "azure_openai"):
        return ()
    names = ("OPENAI_BASE_URL", "OPENAI_API_BASE", "AZURE_OPENAI_ENDPOINT")
    return tuple(os.environ.get(name, "") for name in names)


def model_name_of(model: BaseChatModel) -> str:
    """The model string `model` was loaded by (`load_chat_model` or `register_chat_model`).

    A model built some other way (handed in by a user's middleware, say) gets its `model_label`.
    Budgets, breakers and the usage ledger key their records by this name.
    """
    entry = _names.get(id(model))
    return entry[1] if entry is not None and entry[0] is model else model_label(model)


def _load(provider: str, name: str, params: dict[str, Any]) -> BaseChatModel:
    if provider == OFFLINE:
        known = set(OfflineChatModel.model_fields)
        return OfflineChatModel(model_name=name, **{k: v for k, v in params.items() if k in known})
    from langchain.chat_models import init_chat_model

    if not {"api_key", "openai_api_key", "credentials_profile_name", "aws_access_key_id"} & set(
        params
    ):  # credentials passed in code need no environment
        check_credentials(provider)
    if provider in _SDK_RETRIES:
        params = {"max_retries": 0, **params}
    if provider == "openai" and custom_openai_endpoint(params):
        # LangChain asks only OpenAI itself for usage in streams; these servers send it too, and
        # the ledger should hold their count, not an estimate.
        params = {"stream_usage": True, **params}
        if "max_tokens" in params:
            # Sent as well as `max_completion_tokens`, so every such server bounds the call.
            params = {"extra_body": {"max_tokens": params["max_tokens"]}, **params}
    if provider == "ollama" and "max_tokens" in params:
        params = {"num_predict": params.pop("max_tokens"), **params}  # ChatOllama's name
    try:
        chat_model: BaseChatModel = init_chat_model(name, model_provider=provider, **params)
        return chat_model
    except ImportError as exc:
        package = _package_hint(str(exc)) or f"the LangChain integration for {provider!r}"
        raise ModelConfigError(
            f"provider {provider!r} is not installed: pip install {package}"
        ) from None
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        if "provider" in first.lower():
            raise ModelConfigError(
                f"unknown model provider {provider!r}: use 'offline' or a LangChain provider such "
                "as openai, anthropic, bedrock_converse, ollama, google_genai, groq"
            ) from None
        raise ModelConfigError(f"cannot load model '{provider}:{name}': {first}") from None
    except Exception as exc:  # provider SDKs raise their own types for bad settings
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelConfigError(f"cannot load model '{provider}:{name}': {first}") from None


def _package_hint(message: str) -> str | None:
    marker = "pip install "
    if marker in message:
        return message.split(marker, 1)[1].split()[0].strip("`'\".")
    return None


def model_label(model: BaseChatModel) -> str:
    """A short `provider:model` label for usage ledgers and traces."""
    if isinstance(model, OfflineChatModel):
        return provider_label(OFFLINE, model.model_name)
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or "unknown"
    return f"{model._llm_type}:{name}"


def provider_label(provider: str, name: str | None) -> str:
    """`provider:name` as ledgers key a model; the default offline model is plain `offline`."""
    if provider == OFFLINE and name in (None, OFFLINE):
        return OFFLINE
    return f"{provider}:{name}" if name else provider
