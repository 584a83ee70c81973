"""Starts the tritonserver that the nvidia-pytriton wheel ships, on a model repository, and stops it cleanly.

The wheel has only the python backend. Its stub embeds libpython in isolated mode, so models find their packages
through ``EXECUTION_ENV_PATH``: the repository's ``.python_env`` link, which this launcher points at a venv with
numpy<2 and onnxruntime (the running one when it qualifies).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

from export.repository import PYTHON_ENV_LINK


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


def prepare_backends(cache: Path) -> Path:
    """A backend directory whose python backend carries the stub built for this Python version."""
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
        shutil.copy2(stub, python_dir / "triton_python_backend_stub")
        (python_dir / "triton_python_backend_stub").chmod(0o755)
    return target


def _check_stub_env(prefix: Path) -> None:
    python = prefix / "bin" / "python"
    code = "import numpy, onnxruntime; assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise TritonError(f"the python-backend environment {prefix} needs numpy<2 and onnxruntime: {result.stderr.strip()[-300:]}")


def prepare_python_env(repository: Path, cache: Path) -> Path:
    """Point ``<repository>/.python_env`` at a venv the stub can activate, with the interpreter's own libpython."""
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
    link = repository / PYTHON_ENV_LINK
    if link.is_symlink() or link.exists():
        if link.resolve() == env.resolve():
            return env
        link.unlink()
    link.symlink_to(env.resolve(), target_is_directory=True)
    return env


class TritonServer:
    """One tritonserver process: ``with TritonServer(...) as server: server.wait_ready([...])``."""

    def __init__(self, repository: Path, models: list[str], host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int = 8001, metrics_port: int = 8002, log_file: Path | None = None,
                 cache: Path | None = None, extra_args: list[str] | None = None):
        self.repository = Path(repository).resolve()
        self.models = models
        self.host, self.http_port, self.grpc_port, self.metrics_port = host, http_port, grpc_port, metrics_port
        self.log_file = log_file
        self.cache = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emotune" / "triton"
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None
        self._log = None

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "TritonServer":
        return cls(settings.model_repository, settings.model_names, host=settings.triton_host, http_port=settings.triton_http_port,
                   grpc_port=settings.triton_grpc_port, metrics_port=settings.triton_metrics_port, **kwargs)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        backends = prepare_backends(self.cache)
        args = [
            str(_pytriton_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            *[f"--load-model={m}" for m in self.models],
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false", "--exit-timeout-secs=5",
            *self.extra_args,
        ]
        return args

    def start(self) -> "TritonServer":
        missing = [m for m in self.models if not (self.repository / m / "config.pbtxt").exists()]
        if missing:
            raise TritonError(f"{self.repository} has no model {', '.join(missing)}")
        prepare_python_env(self.repository, self.cache)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(_libs_dir()), env.get("LD_LIBRARY_PATH")]))
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_file, "ab")
        self.process = subprocess.Popen(self.command(), env=env, stdout=self._log, stderr=subprocess.STDOUT if self._log else None,
                                        start_new_session=True)
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
        if not self.log_file or not self.log_file.exists():
            return ""
        return "\n--- tritonserver log (tail) ---\n" + self.log_file.read_text(errors="replace")[-3000:]

    def wait(self) -> int:
        """Run until tritonserver exits or this process gets SIGINT/SIGTERM (then stop it cleanly)."""
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            return self.process.wait()
        except KeyboardInterrupt:
            self.stop()
            return 0

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log:
            self._log.close()  # also when the server had already exited

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
