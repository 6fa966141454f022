"""Offline by default: a hub model loads from the local cache, downloads only when the spec names it and the
machine reaches the hub, and otherwise fails with an error that says what is missing and how to fetch it once."""
from __future__ import annotations

import os
from contextlib import contextmanager

from .base import EncoderError


def hub_cache() -> str:
    from huggingface_hub import constants
    return str(constants.HF_HUB_CACHE)


def offline() -> bool:
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def _missing_download(e: BaseException) -> bool:
    """Whether an exception (or one it was raised from) means: not in the cache and not downloadable now."""
    from huggingface_hub import errors
    kinds = (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, errors.HfHubHTTPError, ConnectionError,
             TimeoutError)
    phrases = ("couldn't connect", "cannot find the requested files", "failed to download", "offline mode",
               "local cache", "not a valid model identifier", "is not a local folder")
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, kinds) or any(p in str(e).lower() for p in phrases):
            return True
        e = e.__cause__ or e.__context__
    return False


@contextmanager
def fetching(spec: str, fetch: str):
    """Run a library's loading code; a model that is neither cached nor downloadable becomes an EncoderError
    naming the cache and the command (``fetch``) that downloads it once on a machine with internet."""
    try:
        yield
    except EncoderError:
        raise
    except Exception as e:  # the libraries raise OSError, RuntimeError, ValueError or hub errors for the same thing
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not _missing_download(e):
            raise EncoderError(f"cannot load encoder '{spec}': {type(e).__name__}: {first}") from e
        how = ("the hub is switched off here (HF_HUB_OFFLINE=1)" if offline()
               else "the hub could not be reached or does not have it")
        raise EncoderError(
            f"encoder '{spec}' is not in the local cache ({hub_cache()}) and {how} ({type(e).__name__}: {first}). "
            f"Fetch it once on a machine with internet: `{fetch}`; then copy its cache folder here or point "
            f"HF_HOME at it (now {os.environ.get('HF_HOME', '~/.cache/huggingface')}). "
            "Local files work too: timm:DIR (config.json + model.safetensors), hf:DIR (a save_pretrained folder), "
            "open_clip:ARCH:WEIGHTS_FILE or open_clip:DIR.") from None
