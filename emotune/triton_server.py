"""Starts the tritonserver that the nvidia-pytriton wheel ships, keeps it running, and stops it cleanly.

- **Backends.** The wheel has only the python backend. ``prepare_backends`` builds a backend directory with the
  python backend, the stub for this Python version and the project's Python-based backends
  (``export/triton_backends/<name>/model.py``: ``onnxruntime_cpu`` serves every python-flavour model).
- **Staged repository.** Each start serves a folder of links under the cache (``stage_repository``): one folder per
  selected model whose entries link to the repository's, plus ``.python_env``, the stub's environment (a venv with
  numpy<2 and onnxruntime), so ``EXECUTION_ENV_PATH`` stays inside the model folder and nothing is written into
  the committed repository.
- **Control surface closed.** ``--model-control-mode=none``: the staged repository holds exactly the selected
  models and nothing loads or unloads at run time. The APIs that change the server's state or name its files
  and memory (model-repository, shared-memory, trace, logging; on HTTP also inference and model-config) need a
  header whose value is a random secret made per launch (``control_headers``); the gateway needs only gRPC
  inference and health. HTTP stays for health probes and statistics: a web page's cross-origin POST to it
  (``text/plain``, no preflight) gets a 403 and runs nothing.
- **Supervision.** ``TritonSupervisor`` restarts a tritonserver that died (backoff, a log line,
  ``emotune_triton_restarts_total``), after reaping it and killing its python stubs (its process group).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

from prometheus_client import Counter

from export.repository import BACKENDS_DIR, PYTHON_ENV_LINK

log = logging.getLogger("emotune.triton")

TRITON_RESTARTS = Counter("emotune_triton_restarts", "tritonserver processes restarted by `emotune up` after they died")

CONTROL_HEADER = "emotune-triton-control"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # Triton expects restricted gRPC headers under this prefix
# Closed without the per-launch secret: what changes the server's state or names files and memory. HTTP also keeps
# inference and model-config closed: nothing uses them over HTTP, and a browser can reach HTTP (never gRPC).
RESTRICTED_GRPC = ("model-repository", "shared-memory", "trace", "logging")
RESTRICTED_HTTP = (*RESTRICTED_GRPC, "inference", "model-config")


class TritonError(RuntimeError):
    pass


def _pytriton_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonError("nvidia-pytriton is not installed: `pip install nvidia-pytriton==0.7.0` provides tritonserver")
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def _libs_dir() -> Path:
    return _pytriton_dir().parents[1] / "nvidia_pytriton.libs"


def _replace(src: Path, dst: Path) -> None:
    """Copy ``src`` over ``dst`` atomically (several launchers may share the cache)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def prepare_backends(cache: Path) -> Path:
    """A backend directory: the python backend with the stub built for this Python version, and the project's
    Python-based backends (refreshed on every start, so an edit to one serves at the next start)."""
    source = _pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonError(f"nvidia-pytriton ships no python-backend stub for Python {version}")
    target = cache / f"backends-py{version}"
    python_dir = target / "python"
    if not (python_dir / "triton_python_backend_stub").exists():
        python_dir.mkdir(parents=True, exist_ok=True)
        for item in (source / "backends" / "python").iterdir():
            if item.is_file():
                shutil.copy2(item, python_dir / item.name)
        _replace(stub, python_dir / "triton_python_backend_stub")
        (python_dir / "triton_python_backend_stub").chmod(0o755)
    for model_py in sorted(BACKENDS_DIR.glob("*/model.py")):
        _replace(model_py, target / model_py.parent.name / "model.py")
    return target


def _check_stub_env(prefix: Path) -> None:
    python = prefix / "bin" / "python"
    code = "import numpy, onnxruntime; assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise TritonError(f"the python-backend environment {prefix} needs numpy<2 and onnxruntime: {result.stderr.strip()[-300:]}")


def prepare_python_env(cache: Path) -> Path:
    """A venv the stub can activate (the running one when it qualifies), with the interpreter's own libpython."""
    if sys.prefix != sys.base_prefix:
        env = Path(sys.prefix)
    else:  # not in a venv: a thin venv over this interpreter's site-packages
        env = cache / "python-env"
        if not (env / "bin" / "activate").exists():
            venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env)
    _check_stub_env(env)
    libname = sysconfig.get_config_var("INSTSONAME") or f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    libpython = Path(sysconfig.get_config_var("LIBDIR") or "") / libname
    if libpython.exists() and not (env / "lib" / libname).exists():
        (env / "lib" / libname).symlink_to(libpython)
    return env.resolve()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_repository(repository: Path, models: list[str], env: Path, cache: Path) -> Path:
    """``<cache>/repositories/<pid>-<random>/<model>/``: links to each selected model folder's entries, plus ``.python_env``."""
    root = cache / "repositories"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():  # left by a launcher that was killed before it could clean up
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    staged = root / f"{os.getpid()}-{secrets.token_hex(4)}"
    for model in models:
        folder = staged / model
        folder.mkdir(parents=True)
        for entry in sorted((repository / model).iterdir()):
            if entry.name not in (PYTHON_ENV_LINK, "__pycache__"):
                (folder / entry.name).symlink_to(entry.resolve())
        (folder / PYTHON_ENV_LINK).symlink_to(env, target_is_directory=True)
    return staged


class TritonServer:
    """One tritonserver process: ``with TritonServer(...) as server: server.wait_ready([...])``.

    ``model_control=True`` (tests that unload a model) runs ``--model-control-mode=explicit`` instead of ``none``;
    the model-repository API still needs ``control_headers``."""

    def __init__(
        self,
        repository: Path,
        models: list[str],
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        log_file: Path | None = None,
        cache: Path | None = None,
        extra_args: list[str] | None = None,
        model_control: bool = False,
    ):
        self.repository = Path(repository).resolve()
        self.models = models
        self.host, self.http_port, self.grpc_port, self.metrics_port = host, http_port, grpc_port, metrics_port
        self.log_file = log_file
        self.cache = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emotune" / "triton"
        self.extra_args = extra_args or []
        self.model_control = model_control
        self.secret = secrets.token_urlsafe(32)
        self._shm_prefix = f"emotune_{os.getpid()}_{secrets.token_hex(4)}_"
        self.staged: Path | None = None
        self.process: subprocess.Popen | None = None
        self._log = None

    @classmethod
    def from_settings(cls, settings, **kwargs) -> TritonServer:
        return cls(
            settings.model_repository,
            settings.model_names,
            host=settings.triton_host,
            http_port=settings.triton_http_port,
            grpc_port=settings.triton_grpc_port,
            metrics_port=settings.triton_metrics_port,
            **kwargs,
        )

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def control_headers(self) -> dict[str, str]:
        """The HTTP header that opens the restricted APIs of this launch (for tests and benchmarks)."""
        return {CONTROL_HEADER: self.secret}

    @property
    def grpc_control_headers(self) -> dict[str, str]:
        return {GRPC_HEADER_PREFIX + CONTROL_HEADER: self.secret}

    def command(self) -> list[str]:
        if self.staged is None:
            raise TritonError("start() stages the repository before the command exists")
        backends = prepare_backends(self.cache)
        control = (
            ["--model-control-mode=explicit", *[f"--load-model={m}" for m in self.models]] if self.model_control else ["--model-control-mode=none"]
        )
        return [
            str(_pytriton_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.staged}",
            f"--backend-directory={backends}",
            *control,
            f"--http-restricted-api={','.join(RESTRICTED_HTTP)}:{CONTROL_HEADER}={self.secret}",
            f"--grpc-restricted-protocol={','.join(RESTRICTED_GRPC)}:{CONTROL_HEADER}={self.secret}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=5",
            # the stubs' shared-memory regions carry this launch's name, so the ones a killed server leaves are found
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        """Stage the repository (once) and start tritonserver; also how the supervisor restarts it."""
        if self.process is not None and self.process.poll() is None:
            raise TritonError("tritonserver is already running")
        if self.staged is None:
            missing = [m for m in self.models if not (self.repository / m / "config.pbtxt").exists()]
            if missing:
                raise TritonError(f"{self.repository} has no model {', '.join(missing)}")
            self.staged = stage_repository(self.repository, self.models, prepare_python_env(self.cache), self.cache)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(_libs_dir()), env.get("LD_LIBRARY_PATH")]))
        if self.log_file and self._log is None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_file, "ab")  # noqa: SIM115  (open for the server's lifetime, closed in stop())
        self.process = subprocess.Popen(
            self.command(), env=env, stdout=self._log, stderr=subprocess.STDOUT if self._log else None, start_new_session=True
        )
        return self

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def wait_ready(self, models: list[str] | None = None, timeout: float = 300.0) -> None:
        """Block until the server and every model answer READY; raise with the log's tail if the server dies."""
        deadline = time.monotonic() + timeout
        models = self.models if models is None else models
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonError(f"tritonserver exited with {self.process.returncode}{self._log_tail()}")
            if self._get("/v2/health/ready") == 200 and all(self._get(f"/v2/models/{m}/ready") == 200 for m in models):
                return
            time.sleep(0.5)
        raise TritonError(f"models {models} not ready after {timeout:.0f} s{self._log_tail()}")

    def _log_tail(self) -> str:
        """The log's model-load failures (the model table's UNAVAILABLE rows), then its last lines."""
        if not self.log_file or not self.log_file.exists():
            return ""
        text = self.log_file.read_text(errors="replace")
        failures = [line.strip() for line in text.splitlines() if "| UNAVAILABLE: " in line][-10:]
        return "\n--- tritonserver log ---\n" + "".join(f"{line}\n" for line in failures) + "...\n" + text[-2000:]

    def wait(self) -> int:
        """Run until tritonserver exits or this process gets SIGINT/SIGTERM (then stop it cleanly)."""
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            return self.wait_exit()
        except KeyboardInterrupt:
            self.stop()
            return 0

    def wait_exit(self) -> int:
        """Block until tritonserver has exited, kill what is left of its process group (the python stubs), reap it."""
        pid = self.process.pid
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited but not reaped: its pid still names the group
        except ChildProcessError:  # already reaped (by another waiter)
            pass
        else:
            self._kill_group(pid)
        code = self.process.wait()
        self._remove_shm()
        return code

    def _kill_group(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _remove_shm(self) -> None:
        for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            region.unlink(missing_ok=True)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGINT (Triton's graceful exit), SIGKILL to the whole group past ``timeout``; the stubs go with it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            self._kill_group(self.process.pid)
            self.process.wait()
            self._remove_shm()
        if self._log:
            self._log.close()  # also when the server had already exited
            self._log = None
        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)
            self.staged = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class TritonSupervisor:
    """Keeps one tritonserver running for ``emotune up``: when it dies, reap it and its stubs, wait, start it again.

    The wait doubles after each death that follows a short run (1 s up to ``max_backoff_s``) and starts over once
    a server has stayed up ``stable_s``. Meanwhile the gateway's /readyz answers 503 (it asks Triton on each call)."""

    def __init__(self, server: TritonServer, ready_timeout_s: float = 300.0, max_backoff_s: float = 30.0, stable_s: float = 60.0):
        self.server = server
        self.ready_timeout_s, self.max_backoff_s, self.stable_s = ready_timeout_s, max_backoff_s, stable_s
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a restart and stop() never interleave (no server started after stop)
        self._thread: threading.Thread | None = None

    def start(self) -> TritonSupervisor:
        self.server.start()
        self.server.wait_ready(timeout=self.ready_timeout_s)
        self._thread = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self.server.wait_exit()
            if self._stopping.is_set():
                return
            backoff = 1.0 if time.monotonic() - started >= self.stable_s else backoff
            log.warning("tritonserver (pid %d) exited with %s; restarting in %.0f s", self.server.process.pid, code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff_s)
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self.server.start()
                self.restarts += 1
                TRITON_RESTARTS.inc()
                self.server.wait_ready(timeout=self.ready_timeout_s)
                log.warning("tritonserver restarted (pid %d) and ready", self.server.process.pid)
            except (TritonError, OSError) as exc:  # the next loop reaps it (or finds it never started) and tries again
                log.warning("tritonserver restart failed: %s", str(exc)[:500])

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self.server.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> TritonSupervisor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
