"""The admin dashboard (GET / on the admin listener) in a real browser: headless Chromium driven by
chromedriver through Debian's python3-selenium, against real weir and `weir whoami` servers.

- the page is self-contained (no external asset in its HTML, every request the browser makes goes
  to the admin origin) and lists every listener, backend and server with state and weight;
- it is live: traffic shows as req/s and p50/p99 latency on the servers that carry it, 5xx answers
  as an error rate on the server that sent them, requests in flight as such;
- with the token typed in, its buttons drain / maint / ready a server through the runtime API, and
  a server whose health check fails shows "down";
- a wrong token shows an error and changes nothing; without admin.token_file the page says the
  write API is off;
- a screenshot is saved as a test artifact ($WEIR_ARTIFACTS/dashboard.png, else
  build/test-artifacts/dashboard.png) and, with WEIR_UPDATE_DOCS=1, to docs/dashboard.png.

Every wait is bounded (WebDriverWait); the browser is closed by a cleanup.
"""

import collections
import json
import os
import re
import shutil
import threading
import time
import unittest

from weirtest import (HERE, HOST, HttpConn, WeirTestCase, _pdeathsig, admin_backends, admin_get,
                      find_server, free_port, require, set_whoami_health, wait_until)

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    SELENIUM_MISSING = None
except ImportError as e:  # reported by require() in setUp
    SELENIUM_MISSING = f"python3-selenium is not installed ({e})"

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TOKEN = "dashboard-test-token"
DASH = "\u2013"
LATENCY = re.compile(r"^(\u2264 [0-9.]+ (ms|s)|> [0-9.]+ s)$")
FAST_CHECK = {"type": "http", "path": "/healthz", "interval": "300ms", "timeout": "2s",
              "rise": 1, "fall": 2}

# One call for the whole page: {backend: {server: {field: text}}}, listeners, the message box.
PAGE_STATE_JS = """
var out = {servers: {}, listeners: {}, backends: [], message: "", status: ""};
document.querySelectorAll("section[data-backend]").forEach(function (s) {
  out.backends.push(s.getAttribute("data-backend"));
});
document.querySelectorAll("tr[data-server]").forEach(function (tr) {
  var b = tr.getAttribute("data-backend"), s = tr.getAttribute("data-server"), row = {};
  tr.querySelectorAll("td[data-field]").forEach(function (td) {
    row[td.getAttribute("data-field")] = td.textContent.trim();
  });
  (out.servers[b] = out.servers[b] || {})[s] = row;
});
document.querySelectorAll("tr[data-listener]").forEach(function (tr) {
  var row = {};
  tr.querySelectorAll("td[data-field]").forEach(function (td) {
    row[td.getAttribute("data-field")] = td.textContent.trim();
  });
  out.listeners[tr.getAttribute("data-listener")] = row;
});
var m = document.getElementById("message");
out.message = m ? m.textContent : "";
var st = document.getElementById("status");
out.status = st ? st.textContent : "";
return out;
"""


def artifact_path(name: str) -> str:
    folder = os.environ.get("WEIR_ARTIFACTS") or os.path.join(REPO, "build", "test-artifacts")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)


class Traffic:
    """Requests through weir from a thread, on keep-alive connections, until stop(): each round
    sends every target once. .answers counts (server name, status) from whoami's answers."""

    def __init__(self, port: int, targets: list[str], pause: float = 0.02):
        self.port, self.targets, self.pause = port, targets, pause
        self.answers: collections.Counter = collections.Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        conn = None
        while not self._stop.is_set():
            for target in self.targets:
                if self._stop.is_set():
                    break
                try:
                    if conn is None:
                        conn = HttpConn(self.port, timeout=10)
                    r = conn.get(target)
                    with self.lock:
                        self.answers[(r.whoami_name(), r.status)] += 1
                    if (r.header("Connection") or "").lower() == "close":
                        conn.close()
                        conn = None
                except Exception as e:  # noqa: BLE001 - reported by the test
                    with self.lock:
                        self.failures.append(f"{target}: {e!r}")
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._stop.wait(0.2)
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def total(self) -> int:
        with self.lock:
            return sum(self.answers.values())

    def stop(self):
        self._stop.set()
        self._thread.join(20)
        if self._thread.is_alive():
            raise AssertionError("traffic thread stuck")


class DashboardTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        require(SELENIUM_MISSING is None, SELENIUM_MISSING or "", self)
        require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing (Debian package chromium)", self)
        require(os.access(CHROMEDRIVER, os.X_OK), f"{CHROMEDRIVER} missing (Debian package chromium-driver)", self)
        self.app = [self.start_whoami(n) for n in ("a1", "a2", "a3")]
        self.api = [self.start_whoami(n) for n in ("b1", "b2")]

    # -- weir ------------------------------------------------------------------------------------

    def start(self, token_file: bool = True):
        self.port, self.admin = free_port(), free_port()
        admin = {"listen": f"{HOST}:{self.admin}"}
        if token_file:
            path = os.path.join(self.tmp, "admin.token")
            with open(path, "w") as f:
                f.write(TOKEN + "\n")
            admin["token_file"] = path
        app = [{"name": w.name, "address": w.address} for w in self.app]
        app[2]["weight"] = 3
        cfg = {
            "workers": 2,
            "admin": admin,
            "listeners": [{"name": "web", "listen": f"{HOST}:{self.port}",
                           "routes": [{"match": {"path_prefix": "/api/"}, "backend": "api"},
                                      {"backend": "app"}]}],
            "backends": [
                {"name": "app", "health_check": dict(FAST_CHECK), "servers": app},
                # Hashing on ?k= lets the test send its 5xx to one chosen server.
                {"name": "api", "balance": "consistent_hash", "hash_key": "query:k",
                 "health_check": dict(FAST_CHECK),
                 "servers": [{"name": w.name, "address": w.address} for w in self.api]},
            ],
        }
        self.lb = self.start_weir(cfg)
        return self.lb

    def api_state(self, backend: str, server: str) -> dict:
        return find_server(admin_backends(self.admin), backend, server)

    # -- the browser -----------------------------------------------------------------------------

    def browser(self):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                    "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-extensions", "--disable-default-apps",
                    "--hide-scrollbars", "--force-color-profile=srgb",
                    f"--user-data-dir={os.path.join(self.tmp, 'chromium-profile')}"):
            opts.add_argument(arg)
        # Every request the page makes, from the DevTools network events.
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        service = Service(CHROMEDRIVER, log_path=os.path.join(self.tmp, "chromedriver.log"),
                          popen_kw={"preexec_fn": _pdeathsig})
        driver = webdriver.Chrome(service=service, options=opts)
        self.addCleanup(driver.quit)
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        self.driver = driver
        return driver

    def open_page(self):
        if not hasattr(self, "driver"):
            self.browser()
        self.origin = f"http://{HOST}:{self.admin}"
        self.driver.get_log("performance")  # drop what the browser did before (its blank tab)
        self.driver.get(self.origin + "/")
        # Filled in: every server row has a state.
        self.wait(lambda s: s["servers"] and all(row.get("state") for rows in s["servers"].values()
                                                 for row in rows.values()),
                  15, "the first poll to fill the tables")

    def page(self) -> dict:
        return self.driver.execute_script(PAGE_STATE_JS)

    def wait(self, predicate, timeout: float, what: str):
        """Polls predicate(page state) until truthy (returned) or fails after timeout seconds with
        the last page state."""
        last = {}

        def check(_):
            nonlocal last
            last = self.page()
            return predicate(last)

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(check)
        except TimeoutException:
            self.fail(f"timed out after {timeout}s waiting for {what}; the page shows {last}")

    def field(self, backend: str, server: str, name: str, state=None) -> str:
        s = state or self.page()
        return s["servers"].get(backend, {}).get(server, {}).get(name)

    def button(self, backend: str, server: str, action: str):
        return self.driver.find_element(
            By.CSS_SELECTOR, f'tr[data-backend="{backend}"][data-server="{server}"] button[data-action="{action}"]')

    def type_token(self, token: str):
        box = self.driver.find_element(By.ID, "token")
        box.clear()
        box.send_keys(token)
        WebDriverWait(self.driver, 5).until(lambda d: self.button("app", "a1", "drain").is_enabled())

    def urls_requested(self) -> list[str]:
        """Every URL the browser asked for since open_page() on behalf of the page (DevTools
        Network.requestWillBeSent of its document), plus the page's navigation and resource
        timing entries."""
        urls = []
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                params = msg["params"]
                if params.get("documentURL", "").startswith(self.origin):
                    urls.append(params["request"]["url"])
        urls += self.driver.execute_script(
            "return performance.getEntriesByType('navigation').concat("
            "performance.getEntriesByType('resource')).map(function (e) { return e.name; });")
        return urls

    def find_keys(self):
        """A ?k= value that the api backend's hash sends to b1, and one it sends to b2."""
        keys = {}
        with HttpConn(self.port) as c:
            for k in range(200):
                name = c.get(f"/api/probe?k={k}").whoami_name()
                keys.setdefault(name, k)
                if len(keys) == 2:
                    return keys["b1"], keys["b2"]
        self.fail(f"no ?k= spreads over b1 and b2: {keys}")

    # -- the cases -------------------------------------------------------------------------------

    def test_page_is_self_contained_and_lists_everything(self):
        self.start()
        r = admin_get(self.admin, "/")
        self.assertEqual(r.status, 200, r.text[:300])
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        html = r.text
        self.assertIn("<html", html)
        # No absolute URL anywhere, no protocol-relative or remote reference in an attribute or CSS.
        self.assertNotRegex(html, r"(?i)https?://")
        for attr, value in re.findall(r"""(?i)\b(src|href|action|srcset|poster|data)\s*=\s*["']?([^"'\s>]*)""", html):
            self.assertFalse(value.startswith("//"), f"{attr}={value}")
            self.assertTrue(not re.match(r"(?i)^[a-z][a-z0-9+.-]*:", value) or value.lower().startswith("data:"),
                            f"{attr}={value} points elsewhere")
        self.assertNotRegex(html, r"(?i)@import|url\(\s*['\"]?(?!data:)(//|[a-z][a-z0-9+.-]*:)")

        self.open_page()
        s = self.page()
        self.assertEqual(list(s["listeners"]), ["web"])
        self.assertIn(f"{HOST}:{self.port}", s["listeners"]["web"]["addresses"])
        self.assertEqual(s["listeners"]["web"]["mode"], "http")
        self.assertEqual(s["backends"], ["app", "api"])
        self.assertEqual(sorted(s["servers"]["app"]), ["a1", "a2", "a3"])
        self.assertEqual(sorted(s["servers"]["api"]), ["b1", "b2"])
        weights = {"a1": "1", "a2": "1", "a3": "3", "b1": "1", "b2": "1"}
        for b, rows in s["servers"].items():
            for name, row in rows.items():
                self.assertEqual(row["state"], "up", (b, name, row))
                self.assertEqual(row["weight"], weights[name], (b, name, row))
                self.assertEqual(row["inflight"], "0", (b, name, row))
                self.assertIn(":", row["address"])

        # Live: the page keeps polling (about once a second).
        def polls():
            return sum(1 for u in self.driver.execute_script(
                "return performance.getEntriesByType('resource').map(function (e) { return e.name; });")
                if u.endswith("/api/v1/backends"))
        first = polls()
        wait_until(lambda: polls() >= first + 3, 10, what="three more polls of /api/v1/backends")

        # Every request went to the admin origin: nothing external, nothing else.
        urls = self.urls_requested()
        self.assertTrue(urls)
        for u in urls:
            self.assertTrue(u.startswith(self.origin + "/") or u.startswith("data:"), f"request to {u}: {urls}")
        self.assertIn(self.origin + "/api/v1/backends", urls)
        # No script error or failed load in the console.
        severe = [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]
        self.assertEqual(severe, [])

    def test_live_rates_latency_errors_and_in_flight(self):
        lb = self.start()
        self.open_page()
        # In flight: two slow requests to the app backend show as 2 in flight in total.
        slow = [HttpConn(self.port, timeout=30) for _ in range(2)]
        for c in slow:
            self.addCleanup(c.close)
            c.send(b"GET /slow?delay=6s HTTP/1.1\r\nHost: x\r\n\r\n")

        def in_flight(s):
            return sum(int(row["inflight"]) for row in s["servers"]["app"].values())
        self.wait(lambda s: in_flight(s) == 2, 5, "2 requests in flight on app's servers")
        for c in slow:
            self.assertEqual(c.read_response().status, 200)
        self.wait(lambda s: in_flight(s) == 0, 5, "no request in flight once they are answered")

        k_err, k_ok = self.find_keys()  # b1 answers 500, b2 200
        traffic = Traffic(self.port, ["/", f"/api/x?k={k_ok}", f"/api/x?k={k_err}&status=500"])
        self.addCleanup(traffic.stop)
        t0 = time.monotonic()

        def live(s):
            rows = {n: row for rs in s["servers"].values() for n, row in rs.items()}
            for name in ("a1", "a2", "a3", "b1", "b2"):
                row = rows[name]
                if row["rps"] in (DASH, "0") or float(row["rps"]) <= 0:
                    return False
                if not (LATENCY.match(row["p50"]) and LATENCY.match(row["p99"])):
                    return False
                if row["errors"] == DASH:
                    return False
            return rows
        rows = self.wait(live, 15, "req/s, p50 and p99 on every server")
        print(f"\nreq/s and latency on every server {time.monotonic() - t0:.1f}s after traffic began")
        # The 500s are b1's: an error rate there, none elsewhere.
        self.assertRegex(rows["b1"]["errors"], r"^[0-9.]+ %$")
        self.assertGreater(float(rows["b1"]["errors"].split()[0]), 0, rows["b1"])
        for name in ("a1", "a2", "a3", "b2"):
            self.assertEqual(rows[name]["errors"], "0 %", (name, rows[name]))
        # The listener counts them too.
        self.assertNotIn(self.page()["listeners"]["web"]["rps"], (DASH, "0"))
        with traffic.lock:
            answers = dict(traffic.answers)
        self.assertEqual(traffic.failures, [])
        self.assertEqual({k for k in answers if k[1] != 200}, {("b1", 500)}, answers)
        # The API agrees: errors on b1 only.
        bs = admin_backends(self.admin)
        self.assertGreater(find_server(bs, "api", "b1")["errors_total"], 0)
        self.assertEqual(find_server(bs, "api", "b2")["errors_total"], 0)

        # Traffic stops: req/s falls back to 0 (the rate is over the last few seconds).
        traffic.stop()
        self.wait(lambda s: all(row["rps"] == "0" for rs in s["servers"].values() for row in rs.values()),
                  15, "req/s back to 0 once traffic stopped")
        self.assertTrue(lb.proc.alive())

    def test_buttons_drain_maint_ready_and_health_down(self):
        self.start()
        self.open_page()
        # Without a token the buttons are off.
        self.assertFalse(self.button("app", "a2", "drain").is_enabled())
        self.type_token(TOKEN)
        for action, api, shown in (("drain", "drain", "drain"), ("maint", "maint", "maint"),
                                   ("ready", "ready", "up")):
            t0 = time.monotonic()
            self.button("app", "a2", action).click()
            wait_until(lambda: self.api_state("app", "a2")["state"] == api, 10,
                       what=f"the API to say a2 is {api}")
            self.wait(lambda s: self.field("app", "a2", "state", s) == shown, 10,
                      f"a2 shown as {shown}")
            print(f"\n{action}: shown as {shown!r} {time.monotonic() - t0:.2f}s after the click")
            s = self.page()
            self.assertNotIn("wrong token", s["message"])
            # Nothing else changed.
            for b, rows in s["servers"].items():
                for name, row in rows.items():
                    if name != "a2":
                        self.assertEqual(row["state"], "up", (b, name, row))
        # A server with another name in a URL-encoded path: b2 of api.
        self.button("api", "b2", "drain").click()
        wait_until(lambda: self.api_state("api", "b2")["state"] == "drain", 10, what="b2 drained")
        self.button("api", "b2", "ready").click()
        wait_until(lambda: self.api_state("api", "b2")["state"] == "ready", 10, what="b2 ready")

        # A failing health check shows as down, and up again once it passes.
        set_whoami_health(self.app[2], 503)
        self.wait(lambda s: self.field("app", "a3", "state", s) == "down", 15, "a3 shown as down")
        self.assertFalse(self.api_state("app", "a3")["healthy"])
        set_whoami_health(self.app[2], 200)
        self.wait(lambda s: self.field("app", "a3", "state", s) == "up", 15, "a3 shown as up again")

        # The token lives in this tab's sessionStorage, never in the URL; a reload keeps it.
        self.assertNotIn(TOKEN, self.driver.current_url)
        self.driver.refresh()
        self.wait(lambda s: s["servers"], 15, "the page after a reload")
        self.assertEqual(self.driver.find_element(By.ID, "token").get_attribute("value"), TOKEN)
        self.assertTrue(self.button("app", "a1", "drain").is_enabled())
        self.assertNotIn(TOKEN, self.driver.current_url)

    def test_wrong_token_changes_nothing(self):
        self.start()
        self.open_page()
        self.type_token("not-" + TOKEN)
        self.button("api", "b1", "drain").click()
        self.wait(lambda s: "wrong token" in s["message"], 10, "the wrong-token error")
        # Two more polls later, still up, here and in the API.
        time.sleep(2.5)  # the test: nothing may change over a few polls
        self.assertEqual(self.field("api", "b1", "state"), "up")
        self.assertEqual(self.api_state("api", "b1")["state"], "ready")
        # The right token then works.
        self.type_token(TOKEN)
        self.button("api", "b1", "maint").click()
        self.wait(lambda s: self.field("api", "b1", "state", s) == "maint", 10, "b1 shown as maint")
        self.assertEqual(self.api_state("api", "b1")["state"], "maint")

    def test_write_api_off_without_token_file(self):
        self.start(token_file=False)
        self.open_page()
        self.type_token(TOKEN)
        self.button("app", "a1", "drain").click()
        self.wait(lambda s: "API off: set admin.token_file" in s["message"], 10, "the API-off error")
        self.assertEqual(self.api_state("app", "a1")["state"], "ready")
        self.assertEqual(self.field("app", "a1", "state"), "up")

    def test_screenshot(self):
        self.start()
        self.open_page()
        self.type_token(TOKEN)
        k_err, k_ok = self.find_keys()
        traffic = Traffic(self.port, ["/", "/", f"/api/x?k={k_ok}", f"/api/x?k={k_err}",
                                      f"/api/x?k={k_err}&status=503"])
        self.addCleanup(traffic.stop)
        # Every state on one picture: a2 drained, a3 down, b1 answering some 503s.
        self.button("app", "a2", "drain").click()
        wait_until(lambda: self.api_state("app", "a2")["state"] == "drain", 10, what="a2 drained")
        set_whoami_health(self.app[2], 503)
        self.wait(lambda s: self.field("app", "a1", "rps", s) not in (DASH, "0")
                  and self.field("api", "b2", "rps", s) not in (DASH, "0")
                  and self.field("api", "b1", "errors", s) not in (DASH, "0 %")
                  and LATENCY.match(self.field("api", "b1", "p99", s) or "")
                  and self.field("app", "a2", "state", s) == "drain"
                  and self.field("app", "a3", "state", s) == "down",
                  20, "traffic, errors, a drained and a down server on the page")
        # Let the success message fade, then take the picture.
        WebDriverWait(self.driver, 10).until(
            lambda d: not d.find_element(By.ID, "message").is_displayed())
        # No hover or focus ring on the picture.
        ActionChains(self.driver).move_to_element(self.driver.find_element(By.TAG_NAME, "h1")).perform()
        self.driver.execute_script("document.activeElement && document.activeElement.blur();")
        path = artifact_path("dashboard.png")
        self.assertTrue(self.driver.save_screenshot(path), path)
        self.assertGreater(os.path.getsize(path), 10000)
        print(f"\nscreenshot: {path}")
        if os.environ.get("WEIR_UPDATE_DOCS") == "1":
            shutil.copyfile(path, os.path.join(REPO, "docs", "dashboard.png"))
            print(f"copied to {os.path.join(REPO, 'docs', 'dashboard.png')}")
        traffic.stop()
        self.assertEqual(traffic.failures, [])


if __name__ == "__main__":
    unittest.main()
