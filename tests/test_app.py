"""app.py and webpage.py: the page in a real headless Chromium (upload a photograph, read a pixel's depth back from the page's
16-bit download and by a click, equal to predict.py's), bad uploads answered with a sentence while the server keeps serving,
a click's depth reading, a video's depth video, and the command line's refusal of a missing model."""
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import predict
from test_predict import tiny_unet
from test_video import video_facts, write_clip

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PAGE_WAIT_S = 60  # the first photo traces the model's forward pass on a busy 2-core machine


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_unet().save(path)
    return path


@pytest.fixture(scope="module")
def webpage():
    """webpage.py, imported by the tests that use it: Gradio takes seconds to import, which every pytest-xdist worker
    would pay again while collecting this file."""
    import webpage as module
    return module


@pytest.fixture(scope="module")
def page(model_path, webpage):
    return webpage.Page(webpage.load_models([model_path]))


def photo_file(path, hw=(75, 100), seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path)
    return path


def bomb_png(path, side=30000):
    """A PNG whose header declares side x side grey pixels (what Pillow's decompression-bomb check reads), with
    the first rows' compressed zeros: 900 megapixels would take 900 MB decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(bytes((side + 1) * 16))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_bad_uploads_get_a_sentence_and_good_ones_still_work(page, model_path, tmp_path):
    label = str(model_path)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not a photograph")
    cases = {
        tmp_path / "empty.png": "**error:** empty.png: empty.png is an empty file (0 bytes); choose a photograph",
        tmp_path / "notes.jpg": "**error:** notes.jpg: notes.jpg is not a readable image (cannot identify image "
                                f"file '{tmp_path / 'notes.jpg'}'); choose a JPEG, PNG or another photo format",
        bomb_png(tmp_path / "bomb.png"): "**error:** bomb.png: bomb.png is not a readable image (Image size "
                                         "(900000000 pixels) exceeds limit of 178956970 pixels, could be "
                                         "decompression bomb DOS attack.); choose a JPEG, PNG or another photo "
                                         "format",
    }
    for upload, message in cases.items():
        outputs = page.photo(label, str(upload), None)
        assert outputs[5] == message and outputs[0] is None
    outputs = page.photo(label, str(photo_file(tmp_path / "ok.png")), None)
    assert outputs[5].startswith("depth of **ok** by ")
    assert [Path(f).name for f in outputs[4]] == ["ok_depth.png", "ok_depth.npy", "ok.ply"]


def test_a_click_reads_the_depth_at_that_pixel(page, webpage, model_path, tmp_path):
    depth_m = page.photo(str(model_path), str(photo_file(tmp_path / "room.png")), None)[6]

    class Click:
        index = [30, 12]  # column, row

    assert webpage.Page.read_depth(depth_m, Click()) == f"depth at column 30, row 12: **{depth_m[12, 30]:.3f} m**"


def test_a_video_upload_gives_its_depth_video(page, model_path, tmp_path):
    clip = write_clip(tmp_path / "hall.mp4", frames=6)
    video_path, files, status = page.clip(str(model_path), str(clip))
    assert status.startswith("6 frames of **hall.mp4**: colours from ")
    assert video_facts(video_path)[0] == 6 and Path(files[1]).name == "hall_depth.npy"
    assert page.clip(str(model_path), str(photo_file(tmp_path / "still.png")))[2] == (
        "**error:** still.png: not a video file; choose .mp4 .mov .avi .mkv .webm")


def test_a_missing_model_is_refused_in_one_sentence(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), "--model", str(tmp_path / "none.keras")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: no model file at {tmp_path / 'none.keras'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    """Debian's headless Chromium through its chromedriver (make setup installs both where it can); never a
    driver fetched by Selenium Manager."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no chromium and chromedriver on PATH: make setup installs them with apt-get as root "
                    "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_the_page_in_a_browser_gives_predict_pys_depth(model_path, tmp_path, browser, webpage):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    port = free_port()
    blocks = webpage.build_page(webpage.load_models([model_path]))
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, PAGE_WAIT_S)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]"))
        status = browser.find_element(By.ID, "status")

        (tmp_path / "empty.png").write_bytes(b"")  # a bad upload first: the page says why and keeps serving
        upload.send_keys(str(tmp_path / "empty.png"))
        wait.until(lambda d: "empty file (0 bytes)" in status.text)

        browser.find_element(By.CSS_SELECTOR, "#photo button[aria-label='Clear']").click()
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]"))
        upload.send_keys(str(photo_file(tmp_path / "kitchen.png")))
        wait.until(lambda d: "depth of kitchen" in status.text)
        links = wait.until(lambda d: [a.get_attribute("href") for a in
                                      d.find_elements(By.CSS_SELECTOR, "#downloads a[href]")
                                      if a.get_attribute("href").endswith("kitchen_depth.png")])
        (tmp_path / "from_page.png").write_bytes(urllib.request.urlopen(links[0], timeout=30).read())
        depth_map = browser.find_element(By.CSS_SELECTOR, "#depth img")
        ActionChains(browser).move_to_element_with_offset(depth_map, 10, 5).click().perform()
        readout = wait.until(lambda d: re.search(r"depth at column (\d+), row (\d+): ([\d.]+) m",
                                                 d.find_element(By.ID, "readout").text))
        browser.save_screenshot(str(tmp_path / "page.png"))
    finally:
        blocks.close()

    assert predict.main(predict.parse_args(["--model", str(model_path), str(tmp_path / "kitchen.png"),
                                            "--out", str(tmp_path / "predict")])) == 0
    with Image.open(tmp_path / "from_page.png") as png:
        assert png.text["depth_units_per_metre"] == "1000"
        page_mm = np.asarray(png).astype(np.int32)
    predict_mm = np.asarray(Image.open(tmp_path / "predict" / "kitchen_depth.png")).astype(np.int32)
    assert page_mm.shape == predict_mm.shape == (75, 100)
    assert abs(page_mm[40, 60] - predict_mm[40, 60]) <= 1  # one pixel's depth, in millimetres
    assert np.abs(page_mm - predict_mm).max() <= 1
    column, row, clicked_m = int(readout[1]), int(readout[2]), float(readout[3])  # the click's pixel and depth
    assert abs(clicked_m * 1000 - predict_mm[row, column]) <= 1.5  # the page rounds to the millimetre too
