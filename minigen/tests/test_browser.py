"""The course's widgets in a real browser: JupyterLab driven by Playwright and the system's Chromium.

The other tests call the widgets from Python; this one checks what a student sees. It starts JupyterLab on
127.0.0.1 (a free port, a random token) over temporary copies of the notebooks, opens each notebook in headless
Chromium, runs it with JupyterLab's own "Run All" command, then moves a slider of a widget with the keyboard and
checks that the picture the browser shows changed: the sigma explorer (01), the clip explorer generating tiny SVD
clips (07) and the orbit explorer, the camera explorer driving tiny SV3D (08). The camera explorer of notebook 06,
the one 08 drives, runs too with MINIGEN_BROWSER_ALL=1 (a minute more). A notebook not written yet is skipped.

Needs the `playwright` package (the dev extra) and a Chromium binary (Debian: `apt-get install chromium`; another
path through $MINIGEN_CHROMIUM). Playwright never downloads a browser here: it launches the system one. Without
either, the tests skip and say which is missing. With MINIGEN_SAVE_SCREENSHOTS=1 they also write the screenshots
that docs/index.md shows into docs/figures/browser_*.png; a plain run never writes into the repository.

The repository's notebooks are never opened by the server: the copies live in a temporary folder (with copies of
data/ and benchmarks/ beside them, which the notebooks read), and the server is stopped, its kernels with it,
however the tests end.
"""

import base64
import io
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
FIGURES = ROOT / "docs" / "figures"
SAVE_SCREENSHOTS = os.environ.get("MINIGEN_SAVE_SCREENSHOTS") == "1"
EVERY_NOTEBOOK = os.environ.get("MINIGEN_BROWSER_ALL") == "1"  # also 06, whose camera explorer 08 drives
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

SERVER_START_S = 120  # JupyterLab's first start on a busy 2-core machine
RUN_ALL_S = 420  # one notebook, Run All, on a busy 2-core machine (nbval takes about half of that)
UPDATE_S = 120  # one widget update (a tiny SVD clip or SV3D orbit is sampled on the CPU)


def find_chromium() -> str | None:
    """The Chromium binary to launch: $MINIGEN_CHROMIUM, else the first Chromium or Chrome on the PATH."""
    chosen = os.environ.get("MINIGEN_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


try:
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip("browser tests need the playwright package (pip install -e '.[dev]')", allow_module_level=True)
CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip("browser tests need a Chromium binary (apt-get install chromium, or set MINIGEN_CHROMIUM)"
                + (f"; MINIGEN_CHROMIUM={os.environ['MINIGEN_CHROMIUM']} is not a file"
                   if os.environ.get("MINIGEN_CHROMIUM") else ""), allow_module_level=True)


# --------------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_settings(folder: Path) -> None:
    """JupyterLab user settings for the run: no autosave, every cell in the DOM, no news or update pop-ups."""
    settings = {
        "@jupyterlab/docmanager-extension/plugin": '{"autosave": false}',
        "@jupyterlab/notebook-extension/tracker": '{"windowingMode": "none"}',
        "@jupyterlab/apputils-extension/notification": '{"fetchNews": "false", "checkForUpdates": false}',
    }
    for plugin, text in settings.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def course_copy(folder: Path) -> Path:
    """The folder the server serves: copies of data/ and benchmarks/, which the notebooks read, and an empty
    notebooks/ that `copy_notebook` fills."""
    root = folder / "course"
    (root / "notebooks").mkdir(parents=True)
    for name in ("data", "benchmarks"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, root / name)
    return root


def copy_notebook(name: str, root: Path) -> None:
    """A copy of notebooks/`name` stripped as nbval runs it (no `# NBVAL_SKIP` cells: the students' exercise stubs
    raise, and Run All would stop there), without outputs or saved widget state."""
    import nbformat

    from minigen.course import is_skipped

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    notebook.cells = [cell for cell in notebook.cells if not is_skipped(cell)]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, root / "notebooks" / name)


class Lab:
    """A JupyterLab server started for the tests; `stop()` ends it and its kernels."""

    def __init__(self, folder: Path):
        self.root = course_copy(folder)
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        lab_settings(folder / "lab-settings")
        env = {key: value for key, value in os.environ.items() if not key.startswith(("MINIGEN_", "JUPYTER"))}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",  # the kernels: one thread each on a 2-core machine
                   JUPYTERLAB_SETTINGS_DIR=str(folder / "lab-settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(folder / "lab-workspaces"),
                   JUPYTER_CONFIG_DIR=str(folder / "jupyter-config"),
                   JUPYTER_RUNTIME_DIR=str(folder / "jupyter-runtime"),
                   IPYTHONDIR=str(folder / "ipython"))
        self.log = open(folder / "jupyter.log", "wb")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--port-retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--ServerApp.terminals_enabled=False", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI containers run as root
            cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, size: int = 3000) -> str:
        self.log.flush()
        return Path(self.log.name).read_bytes()[-size:].decode(errors="replace")

    def api(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer on {self.url} within {SERVER_START_S} s:\n{self.log_tail()}")

    def shutdown_kernels(self) -> None:
        import json

        for session in json.loads(self.api("sessions")):
            self.api(f"sessions/{session['id']}", method="DELETE")

    def children(self) -> dict[int, bytes]:
        """The server's child processes (its kernels, which run in sessions of their own): pid -> command line."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
        return found

    def stop(self) -> None:
        """Shut the kernels down, SIGTERM the server, then SIGKILL whatever of it and its kernels is left."""
        try:
            kernels = self.children()
            if self.process.poll() is None:
                try:
                    self.shutdown_kernels()
                except OSError:
                    pass
                self.process.terminate()  # SIGTERM: the server stops, shutting down any kernel still running
                try:
                    self.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            for pid, command in kernels.items():  # still there, and still the same process
                try:
                    if Path(f"/proc/{pid}/cmdline").read_bytes() == command:
                        os.kill(pid, signal.SIGKILL)
                except (OSError, ProcessLookupError):
                    pass
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("browser"))
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])  # --no-sandbox: CI runs as root
        try:
            yield chromium
        finally:
            chromium.close()


# ------------------------------------------------------------------------------------------ the notebooks

CELL_STATE = """() => {
    const code = window.__notebook.content.widgets.filter(
        cell => cell.model.type === 'code' && cell.model.sharedModel.getSource().trim() !== '');
    const errors = [];
    for (const cell of code) {
        for (let i = 0; i < cell.model.outputs.length; i++) {
            const output = cell.model.outputs.get(i).toJSON();
            if (output.output_type === 'error') errors.push(`${output.ename}: ${output.evalue}`);
        }
    }
    const kernel = window.__notebook.sessionContext.session?.kernel;
    return {total: code.length, pending: code.filter(cell => cell.model.executionCount === null).length,
            errors, kernel: kernel ? kernel.status : 'none'};
}"""

IMAGE_BYTES = """async image => {
    const blob = await (await fetch(image.src)).blob();
    return await new Promise(resolve => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result.split(',')[1]);
        reader.readAsDataURL(blob);
    });
}"""


class Notebook:
    """One notebook open in its own browser page."""

    def __init__(self, lab: Lab, browser, name: str):
        self.lab, self.name = lab, name
        self.context = browser.new_context(viewport={"width": 1400, "height": 1800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.page.goto(f"{lab.url}/lab/tree/notebooks/{name}?reset&token={lab.token}", timeout=120_000)
        self.page.wait_for_function(
            f"""() => {{ const widget = window.jupyterapp?.shell.currentWidget;
                        return widget?.context?.path === 'notebooks/{name}' && widget.sessionContext; }}""",
            timeout=120_000)
        self.page.evaluate("""async () => {
            const panel = window.jupyterapp.shell.currentWidget;
            window.__notebook = panel;
            await panel.context.ready;
            await panel.sessionContext.ready;
            panel.content.widgets.forEach((cell, index) => cell.node.setAttribute('data-minigen-cell', index));
        }""")
        self.page.wait_for_function("() => window.__notebook.sessionContext.session?.kernel?.status === 'idle'",
                                    timeout=120_000)

    def run_all(self) -> float:
        """JupyterLab's Run All; waits for every code cell, fails on the first error. Returns the seconds taken."""
        started = time.monotonic()
        self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        deadline = started + RUN_ALL_S
        while True:
            state = self.page.evaluate(CELL_STATE)
            if state["errors"]:
                pytest.fail(f"{self.name} raised in the browser: {state['errors'][0]}")
            if state["kernel"] in ("dead", "unknown", "none") and time.monotonic() - started > 5:
                pytest.fail(f"{self.name}: the kernel is {state['kernel']}\n{self.lab.log_tail()}")
            if state["pending"] == 0 and state["kernel"] == "idle":
                seconds = time.monotonic() - started
                print(f"{self.name}: Run All took {seconds:.0f} s in the browser")  # shown by pytest -rP
                return seconds
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: {state['pending']} of {state['total']} cells still not run after "
                            f"{RUN_ALL_S} s")
            time.sleep(1)

    def cell(self, source: str):
        """The output of the first code cell whose source is exactly `source` (stripped)."""
        index = self.page.evaluate(
            """source => window.__notebook.content.widgets.findIndex(
                   cell => cell.model.type === 'code' && cell.model.sharedModel.getSource().trim() === source)""",
            source)
        assert index >= 0, f"{self.name} has no code cell `{source}`"
        output = self.page.locator(f"[data-minigen-cell='{index}'] .jp-Cell-outputArea")
        output.locator(".jupyter-widgets").first.wait_for(state="visible")
        output.scroll_into_view_if_needed()
        return output

    def wait_idle(self) -> None:
        """The kernel has handled every message the page sent (and the page had a moment to draw the replies)."""
        self.page.wait_for_function("() => window.__notebook.sessionContext.session?.kernel?.status === 'idle'",
                                    timeout=UPDATE_S * 1000)
        self.page.wait_for_timeout(500)
        self.page.wait_for_function("() => window.__notebook.sessionContext.session?.kernel?.status === 'idle'",
                                    timeout=UPDATE_S * 1000)

    def close(self) -> None:
        try:
            self.lab.shutdown_kernels()
        finally:
            self.context.close()  # closes the page without its "leave the page?" prompt


@pytest.fixture
def open_notebook(lab, browser):
    opened = []

    def open_(name: str) -> Notebook:
        if not (NOTEBOOKS / name).is_file():
            pytest.skip(f"notebooks/{name} is not written yet")
        copy_notebook(name, lab.root)
        opened.append(Notebook(lab, browser, name))
        return opened[-1]

    yield open_
    for notebook in opened:
        notebook.close()


def slider(output, description: str):
    """The ipywidgets slider labelled `description` inside a cell's output."""
    label = output.page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    found = output.locator(".widget-slider", has=label)
    found.first.wait_for(state="visible")
    return found.first


def move(notebook: Notebook, control, key: str, presses: int = 1) -> tuple[str, str]:
    """Move a slider with the keyboard, as a student would; returns its readout before and after."""
    readout = control.locator(".widget-readout")
    before = readout.inner_text()
    handle = control.locator(".noUi-handle").first
    handle.focus()
    for _ in range(presses):
        handle.press(key)
    notebook.page.wait_for_function("([element, text]) => element.innerText !== text",
                                    arg=[readout.element_handle(), before], timeout=10_000)
    return before, readout.inner_text()


def redrawn(notebook: Notebook, image, action):
    """Do `action`, wait until `image` shows a new picture and the kernel has sent every update; returns what
    `action` returns."""
    old = image.get_attribute("src")
    result = action()
    notebook.page.wait_for_function("([image, old]) => image.src !== old", arg=[image.element_handle(), old],
                                    timeout=UPDATE_S * 1000)
    notebook.wait_idle()
    return result


def shown(image) -> bytes:
    """The bytes of the picture an <img> shows (a PNG or an animated GIF), once the browser has decoded it."""
    image.page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=image.element_handle(),
                                 timeout=UPDATE_S * 1000)
    return base64.b64decode(image.evaluate(IMAGE_BYTES))


def pixels_changed(before: bytes, after: bytes) -> float:
    """The fraction of pixels that differ between two pictures (1.0 when their sizes differ)."""
    import numpy as np
    from PIL import Image

    first, second = (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in (before, after))
    if first.shape != second.shape:
        return 1.0
    return float((first != second).any(axis=-1).mean())


def save_screenshot(output, name: str) -> None:
    if SAVE_SCREENSHOTS:
        FIGURES.mkdir(parents=True, exist_ok=True)
        output.screenshot(path=FIGURES / f"browser_{name}.png", animations="disabled")


# ------------------------------------------------------------------------------------------------- tests


def test_sigma_explorer(open_notebook):
    """01: the sigma slider redraws the noised density and the denoiser's arrows."""
    notebook = open_notebook("01_diffusion_2d.ipynb")
    notebook.run_all()
    output = notebook.cell("explorer = sigma_explorer(mixture, sigma=0.3)\nexplorer")
    image = output.locator("img").first
    before = shown(image)
    old, new = redrawn(notebook, image, lambda: move(notebook, slider(output, "sigma"), "PageUp"))
    assert float(new) > float(old)
    assert pixels_changed(before, shown(image)) > 0.01, "the sigma explorer's picture did not change"
    save_screenshot(output, "01_sigma_explorer")


@pytest.mark.skipif(not EVERY_NOTEBOOK, reason="08 drives the same camera explorer; MINIGEN_BROWSER_ALL=1 runs "
                    "06's too (one more minute)")
def test_camera_explorer(open_notebook):
    """06: the camera explorer's azimuth count redraws the cameras, their embedding and the angle table."""
    notebook = open_notebook("06_conditioning_and_guidance.ipynb")
    notebook.run_all()
    output = notebook.cell("explorer = camera_explorer()\nexplorer")
    image, table = output.locator("img").first, output.locator("pre").first
    before, before_table = shown(image), table.inner_text()
    old, new = redrawn(notebook, image, lambda: move(notebook, slider(output, "azimuth count"), "ArrowRight", 4))
    assert int(new) == int(old) + 4
    assert pixels_changed(before, shown(image)) > 0.01, "the camera explorer's picture did not change"
    assert table.inner_text() != before_table, "the angle table did not change"
    save_screenshot(output, "06_camera_explorer")


def test_clip_explorer(open_notebook):
    """07: a new motion_bucket_id makes tiny SVD generate a new clip, shown as a GIF with its measurements."""
    notebook = open_notebook("07_svd_image_to_video.ipynb")
    notebook.run_all()
    output = notebook.cell("explorer")
    clip = output.locator("img").first
    numbers = output.locator(".widget-html", has=notebook.page.locator("table")).first  # what measure() returns
    before, before_numbers = shown(clip), numbers.inner_text()
    old, new = redrawn(notebook, clip, lambda: move(notebook, slider(output, "motion_bucket_id"), "ArrowLeft"))
    assert int(new) < int(old)
    assert shown(clip) != before, "the clip explorer still shows the old clip"
    assert numbers.inner_text() != before_numbers, "the clip explorer's measurements did not change"
    save_screenshot(output, "07_clip_explorer")


def test_orbit_explorer(open_notebook):
    """08: the camera explorer's elevation redraws the cameras; "sample" makes tiny SV3D generate that orbit."""
    notebook = open_notebook("08_sv3d_orbits.ipynb")
    notebook.run_all()
    output = notebook.cell("explorer")
    images = output.locator("img")
    cameras, orbit = images.nth(0), images.nth(1)
    before_cameras, before_orbit = shown(cameras), shown(orbit)
    old, new = redrawn(notebook, cameras, lambda: move(notebook, slider(output, "elevation (deg)"), "PageUp"))
    assert float(new) > float(old)
    assert pixels_changed(before_cameras, shown(cameras)) > 0.01, "the cameras' picture did not change"
    redrawn(notebook, orbit, output.get_by_role("button", name="sample").click)
    assert pixels_changed(before_orbit, shown(orbit)) > 0.01, "the orbit explorer did not show a new orbit"
    save_screenshot(output, "08_orbit_explorer")
