"""One path layer for local folders and object storage (`gs://`, `s3://`): every file vitjax reads or
writes under a workdir, a model folder or a data folder goes through these functions.

Paths stay strings: a local path works exactly as before (`os`, atomic rename-over writes); a URL
`scheme://bucket/key` is an etils `epath.Path` where a library takes one (`path`: orbax's own path
type), and is read and written through the fsspec filesystem epath uses under it (s3fs, gcsfs: the
`cloud` extra), which keeps no listings, so that what another process wrote is seen at once.
Credentials come the usual way: for S3 the AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`,
`~/.aws`), for GCS Application Default Credentials.

Object storage has no folders (a "folder" is the prefix of its keys, there when a key under it is), no
rename (a copy and a delete), no append, and no lock; a whole-object PUT is atomic (readers see the old
object or the new one). Libraries that need a real local file (TensorBoard writers, matplotlib,
transformers' `save_pretrained`, ONNX) write into `local_output`'s local folder, uploaded whole when
they are done; readers that need one get `local_copy`.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile

from etils import epath

LOCAL_SCHEMES = ("", "file")


def scheme(path: str | os.PathLike) -> str:
    """`s3`, `gs`, ... for a URL; "" for a local path."""
    text = os.fspath(path)
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.isidentifier() else ""


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is on object storage (a URL whose scheme is not file://)."""
    return scheme(path) not in LOCAL_SCHEMES


def normalize(path: str | os.PathLike) -> str:
    """A user's path as vitjax keeps it: a URL without a trailing slash, a local path as given
    (`file://` removed)."""
    text = os.fspath(path)
    if scheme(text) == "file":
        return text[len("file://"):]
    return text.rstrip("/") if is_remote(text) and not text.endswith("://") else text


def path(p: str | os.PathLike) -> epath.Path:
    """`p` as an etils `epath.Path` (what orbax takes)."""
    return epath.Path(normalize(p))


def join(base: str | os.PathLike, *parts: str) -> str:
    """`base/part/...`: `os.path.join` locally, `/`-joined keys on object storage."""
    base = os.fspath(base)
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def basename(p: str | os.PathLike) -> str:
    text = os.fspath(p)
    return posixpath.basename(text.rstrip("/")) if is_remote(text) else os.path.basename(text)


def dirname(p: str | os.PathLike) -> str:
    text = os.fspath(p)
    return posixpath.dirname(text.rstrip("/")) if is_remote(text) else os.path.dirname(text)


def absolute(p: str | os.PathLike) -> str:
    """A local path made absolute; a URL as it is."""
    text = normalize(p)
    return text if is_remote(text) else os.path.abspath(text)


def filesystem(p: str | os.PathLike):
    """(fsspec filesystem, the path in its terms) of a URL: the filesystem epath uses under it (s3fs,
    gcsfs), which keeps no listings cache (`_no_listings_cache`)."""
    import fsspec.core

    return fsspec.core.url_to_fs(normalize(p))


# ---- queries ----------------------------------------------------------------------------------------
def exists(p: str | os.PathLike) -> bool:
    if not is_remote(p):
        return os.path.exists(p)
    fs, key = filesystem(p)
    return fs.exists(key)


def isfile(p: str | os.PathLike) -> bool:
    if not is_remote(p):
        return os.path.isfile(p)
    fs, key = filesystem(p)
    return fs.isfile(key)


def isdir(p: str | os.PathLike) -> bool:
    """A local folder, or a prefix on object storage with at least one key under it."""
    if not is_remote(p):
        return os.path.isdir(p)
    fs, key = filesystem(p)
    return fs.isdir(key)


def listdir(p: str | os.PathLike) -> list[str]:
    """The names in folder `p`, sorted (an empty list for a missing folder on object storage; a
    missing local folder raises as `os.listdir` does)."""
    if not is_remote(p):
        return sorted(os.listdir(p))
    fs, key = filesystem(p)
    try:
        entries = fs.ls(key, detail=False)
    except FileNotFoundError:
        return []
    return sorted({posixpath.basename(e.rstrip("/")) for e in entries} - {""})


def glob(pattern: str) -> list[str]:
    """The paths matching `pattern` (`*`, `?`, `[..]`), sorted."""
    if not is_remote(pattern):
        import glob as glob_lib
        return sorted(glob_lib.glob(pattern))
    fs, key = filesystem(pattern)
    prefix = scheme(pattern) + "://"
    return sorted(prefix + match for match in fs.glob(key))


def walk_files(p: str | os.PathLike) -> list[str]:
    """Every file under folder `p`, as paths relative to it ('/'-separated), sorted."""
    p = normalize(p)
    if not is_remote(p):
        return sorted(os.path.relpath(os.path.join(root, name), p).replace(os.sep, "/")
                      for root, _, files in os.walk(p) for name in files)
    fs, key = filesystem(p)
    key = key.rstrip("/")
    try:
        found = fs.find(key)
    except FileNotFoundError:
        return []
    return sorted(f[len(key) + 1:] for f in found if f.startswith(key + "/"))


# ---- whole files -------------------------------------------------------------------------------------
def read_bytes(p: str | os.PathLike) -> bytes:
    if is_remote(p):
        fs, key = filesystem(p)
        return fs.cat_file(key)
    with open(p, "rb") as f:
        return f.read()


def read_text(p: str | os.PathLike) -> str:
    return read_bytes(p).decode("utf-8")


def write_bytes(p: str | os.PathLike, data: bytes) -> None:
    """`data` into `p`, whole or not at all: locally written beside it and renamed over it, on object
    storage one PUT (atomic there)."""
    if is_remote(p):
        fs, key = filesystem(p)
        fs.pipe_file(key, data)
        return
    partial = f"{os.fspath(p)}.tmp"
    try:
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, p)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise


def write_text(p: str | os.PathLike, text: str) -> None:
    write_bytes(p, text.encode("utf-8"))


def create_exclusive(p: str | os.PathLike, data: bytes) -> bool:
    """Writes `data` to `p` only when nothing is there; False when something was. Atomic on every
    store: `O_EXCL` locally, a conditional PUT on S3 (`If-None-Match: *`) and GCS
    (`ifGenerationMatch=0`)."""
    if not is_remote(p):
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    fs, key = filesystem(p)
    try:
        fs.pipe_file(key, data, mode="create")
    except FileExistsError:
        return False
    return True


# ---- folders -----------------------------------------------------------------------------------------
def makedirs(p: str | os.PathLike) -> None:
    """A local folder (and its parents); nothing on object storage, whose folders are key prefixes."""
    if not is_remote(p):
        os.makedirs(p, exist_ok=True)


def remove(p: str | os.PathLike) -> None:
    """Deletes file `p` (missing: FileNotFoundError)."""
    if is_remote(p):
        fs, key = filesystem(p)
        fs.rm_file(key)
    else:
        os.remove(p)


def rmtree(p: str | os.PathLike, missing_ok: bool = True) -> None:
    """Deletes folder `p` and everything under it."""
    if not is_remote(p):
        if missing_ok and not os.path.lexists(p):
            return
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
        return
    fs, key = filesystem(p)
    files = walk_files(p)
    if files:
        fs.rm([f"{key.rstrip('/')}/{name}" for name in files])
    elif not missing_ok and not isfile(p):
        raise FileNotFoundError(os.fspath(p))
    if isfile(p):
        fs.rm_file(key)


def remove_any(p: str | os.PathLike) -> None:
    """Deletes `p`, a file or a folder."""
    rmtree(p) if isdir(p) else remove(p)


def rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Moves file or folder `src` to `dst` (on object storage: copied, then the source deleted)."""
    if not is_remote(src) and not is_remote(dst):
        os.replace(src, dst)
        return
    copy(src, dst)
    remove_any(src)


def copy(src: str | os.PathLike, dst: str | os.PathLike, last: str | None = None) -> None:
    """Copies file or folder `src` to `dst` (either side local or on object storage; a folder's files
    replace those of the same names under `dst`). `last`: the relative name of a file copied after all
    the others (a commit marker: a reader that sees it sees the whole folder)."""
    src, dst = normalize(src), normalize(dst)
    if not isdir(src):
        _copy_file(src, dst)
        return
    names = walk_files(src)
    ordered = [n for n in names if n != last] + [n for n in names if n == last]
    for name in ordered:
        _copy_file(join(src, *name.split("/")), join(dst, *name.split("/")))


def _copy_file(src: str, dst: str) -> None:
    if not is_remote(src) and not is_remote(dst):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        shutil.copyfile(src, dst)
    elif not is_remote(src):
        fs, key = filesystem(dst)
        fs.put_file(src, key)
    elif not is_remote(dst):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        fs, key = filesystem(src)
        fs.get_file(key, dst)
    else:
        write_bytes(dst, read_bytes(src))


# ---- local files for libraries that need them -------------------------------------------------------
def staging_dir(prefix: str = "vitjax-") -> str:
    """A new local temporary folder (removed by its user)."""
    return tempfile.mkdtemp(prefix=prefix)


@contextlib.contextmanager
def local_output(p: str | os.PathLike, folder: bool = True):
    """Yields a local path to write `p` into: `p` itself when local; on object storage a local
    temporary folder (or file, `folder=False`) uploaded to `p` when the block completes (nothing is
    uploaded when it raises), then removed. A folder's files replace those of the same names in `p`."""
    if not is_remote(p):
        if folder:
            os.makedirs(p, exist_ok=True)
        yield os.fspath(p)
        return
    temp = staging_dir()
    try:
        local = temp if folder else os.path.join(temp, basename(p))
        yield local
        if os.path.exists(local):
            copy(local, p)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def local_copy(p: str | os.PathLike):
    """Yields a local path holding `p` (a file or a folder): `p` itself when local, else a temporary
    copy, removed after the block."""
    if not is_remote(p):
        yield os.fspath(p)
        return
    temp = staging_dir()
    try:
        local = os.path.join(temp, basename(p) or "copy")
        if not exists(p):
            raise FileNotFoundError(f"{p}: no such file or folder")
        copy(p, local)
        yield local
    finally:
        shutil.rmtree(temp, ignore_errors=True)


class Mirror:
    """A local folder whose files are uploaded to `remote` on `sync()` (only those changed since the
    last sync), for writers that keep a file open or append (metrics.jsonl, TensorBoard events). On a
    local `remote`, `local` is `remote` itself and `sync` does nothing."""

    def __init__(self, remote: str | os.PathLike):
        self.remote = normalize(remote)
        self.staged = is_remote(self.remote)
        self.local = staging_dir("vitjax-mirror-") if self.staged else self.remote
        self._sent: dict[str, tuple[int, int]] = {}

    def pull(self, name: str) -> str:
        """The local path of file `name`, downloaded first when it is on the remote side."""
        local = os.path.join(self.local, name)
        if self.staged and isfile(join(self.remote, name)):
            _copy_file(join(self.remote, name), local)
            self._sent[name] = _signature(local)
        return local

    def sync(self) -> None:
        if not self.staged:
            return
        for name in walk_files(self.local):
            local = os.path.join(self.local, *name.split("/"))
            signature = _signature(local)
            if self._sent.get(name) != signature:
                _copy_file(local, join(self.remote, *name.split("/")))
                self._sent[name] = signature

    def close(self) -> None:
        """Syncs and removes the local copy."""
        if self.staged:
            try:
                self.sync()
            finally:
                shutil.rmtree(self.local, ignore_errors=True)


def _signature(local: str) -> tuple[int, int]:
    stat = os.stat(local)
    return stat.st_size, stat.st_mtime_ns


# ---- remote data read as local files, copied once per content (data folders, pretrained checkpoints) --
def cache_root() -> str:
    """Where `cached_copy` keeps its copies: `~/.cache/vitjax/remote` (beside the compilation cache)."""
    return os.path.join(os.path.expanduser("~"), ".cache", "vitjax", "remote")


@contextlib.contextmanager
def remote_errors(url: str):
    """Turns what a store raises for `url` into one line naming the URL and the fix: a missing bucket or
    key (FileNotFoundError), no credentials or no access (PermissionError), instead of a client's
    traceback. Other errors pass unchanged."""
    try:
        yield
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{url} does not exist ({_first_line(e)}): check the bucket name and the path "
                                "(and AWS_ENDPOINT_URL for a server that is not AWS).") from None
    except Exception as e:
        code = getattr(e, "code", None)  # gcsfs's HttpError: 401 without credentials, 403 without access
        if isinstance(e, PermissionError) or code == 403 or str(e).startswith("Forbidden"):
            raise PermissionError(f"access to {url} was refused ({_first_line(e)}): use credentials that may "
                                  "read it.") from None
        if code != 401 and type(e).__name__ not in ("NoCredentialsError", "PartialCredentialsError",
                                                    "DefaultCredentialsError"):
            raise
        raise PermissionError(
            f"no credentials to read {url} ({_first_line(e)}): for s3:// set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE; AWS_ENDPOINT_URL for a server that is not AWS), for gs:// "
            "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS.") from None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _content_tag(info: dict) -> str:
    """What changes when an object's bytes change: its ETag (S3), checksum or generation (GCS), else
    its modification time."""
    keys = ("ETag", "etag", "md5Hash", "crc32c", "generation", "LastModified", "updated", "mtime")
    return next((str(info[k]) for k in keys if info.get(k)), "")


def cached_copy(url: str | os.PathLike) -> str:
    """A local path holding the file or folder `url` (a local path is returned as it is), for readers
    that open many files or need real ones (a data folder's images, a checkpoint's weights, orbax).

    On object storage the objects are downloaded once into `cache_root()`, into a folder named by the
    listing: every key's name, size and ETag (or checksum). A later call on unchanged objects costs one
    listing and returns the same folder; a changed, added or removed object gives a new folder, so
    whatever is keyed by the local paths (the decode and feature caches) follows the content. The
    download goes to a partial folder renamed into place when complete: a killed run leaves no copy
    that looks whole, and processes copying the same content at once keep the first finished one.
    Copies are never deleted by vitjax (delete `cache_root()` to free the space)."""
    import hashlib
    import logging
    import re

    if not is_remote(url):
        return os.fspath(url)
    url = normalize(url)
    with remote_errors(url):
        fs, key = filesystem(url)
        key = key.rstrip("/")
        found = {name.rstrip("/"): info for name, info in fs.find(key, detail=True, refresh=True).items()
                 if info.get("type") != "directory" and not name.endswith("/")}
        if key in found:  # a file: a folder of that one file
            files, single = {basename(url): found[key]}, basename(url)
        else:
            files, single = {name[len(key) + 1:]: info for name, info in found.items()
                             if name.startswith(key + "/")}, None
        if not files:
            raise FileNotFoundError("no object has this name or prefix")
        unsafe = [name for name in files if {"", ".", ".."} & set(name.split("/"))]
        if unsafe:  # "a//b" has no local name; "../x" would land outside the copy
            from vitjax.errors import BadValue
            raise BadValue(f"{url}: object names {unsafe[:3]} cannot be local file names (an empty, '.' or "
                           "'..' part); rename them or read another prefix.")
        digest = hashlib.sha256(repr(
            (url, sorted((name, info.get("size"), _content_tag(info)) for name, info in files.items()))).encode())
        target = os.path.join(cache_root(), re.sub(r"[^A-Za-z0-9._-]", "_", basename(url)) + "-" +
                              digest.hexdigest()[:16])
        if not os.path.isdir(target):
            os.makedirs(cache_root(), exist_ok=True)
            partial = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.partial-", dir=cache_root())
            try:
                local = [os.path.join(partial, *name.split("/")) for name in files]
                remote = [key if single else f"{key}/{name}" for name in files]
                fs.get(remote, local)
                changed = [name for name, path in zip(files, local)
                           if os.path.getsize(path) != files[name].get("size", os.path.getsize(path))]
                if changed:
                    raise OSError(f"{url} changed while it was copied ({changed[:3]}): run again.")
                try:
                    os.rename(partial, target)
                except OSError:
                    if not os.path.isdir(target):  # not another process finishing the same copy first
                        raise
                logging.getLogger(__name__).info("%s: %d file(s), %.1f MB, copied to %s", url, len(files),
                                                 sum(i.get("size") or 0 for i in files.values()) / 1e6, target)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return os.path.join(target, single) if single else target


def _no_listings_cache() -> None:
    """Object stores are shared with other processes (the other hosts, the next run) and reached through
    more than one client here (epath keeps its own): no client keeps listings in memory, so `exists`,
    `isdir` and `listdir` see the store as it is now, not as one client listed it before a write made
    through another (s3fs and gcsfs keep listings for a client's lifetime by default)."""
    import fsspec.config

    for protocol in ("s3", "gs"):
        fsspec.config.conf.setdefault(protocol, {}).setdefault("use_listings_cache", False)


_no_listings_cache()
