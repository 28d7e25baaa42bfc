// rollwise dashboard: signs in with a token, then shows every model's versions,
// traffic split and rollout, read from the control API every two seconds.
//
// Every text that comes from the API goes into the page through textContent or
// createElement, never as markup, so a model name or failure reason that looks like
// HTML is shown as it is written.
"use strict";

(() => {
  const TOKEN_KEY = "rollwise.token";
  const POLL_MS = 2000;
  const ACTIVE_PHASES = new Set(["pending", "progressing", "paused"]);
  const COLOURS = 6;

  const $ = (id) => document.getElementById(id);
  const view = {
    loading: $("loading"),
    identity: $("identity"),
    who: $("who"),
    signOut: $("sign-out"),
    signIn: $("sign-in"),
    form: $("sign-in-form"),
    token: $("token"),
    signInError: $("sign-in-error"),
    overview: $("overview"),
    updated: $("updated"),
    pollError: $("poll-error"),
    models: $("models"),
  };

  // A generation number: a poll that was started before a sign-out, or before a
  // newer sign-in, must not draw over what came after it.
  let session = 0;
  let timer = null;
  let lastUpdate = null;
  // The token in use; a copy of what session storage holds, or the only copy when
  // the browser refuses storage.
  let memoryToken = storedToken();

  // ---- the token: session storage only, never a URL, never logged ----

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  function storeToken(token) {
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch (_) {
      // Storage refused (a private mode): the token then lives in this page only.
    }
    memoryToken = token;
  }

  function forgetToken() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Nothing stored.
    }
    memoryToken = null;
  }

  // ---- the control API ----

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (memoryToken) {
      headers.Authorization = "Bearer " + memoryToken;
    }
    let response;
    try {
      response = await fetch(path, {
        headers,
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
      });
    } catch (_) {
      throw new ApiError(0, "the gateway cannot be reached");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const said = body && typeof body.error === "string" ? body.error : "";
      throw new ApiError(response.status, `HTTP ${response.status}${said ? ": " + said : ""}`);
    }
    return body;
  }

  // ---- small DOM helpers (text only) ----

  function el(tag, options, children) {
    const node = document.createElement(tag);
    if (options) {
      if (options.className) node.className = options.className;
      if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
      if (options.attrs) {
        for (const [name, value] of Object.entries(options.attrs)) node.setAttribute(name, value);
      }
    }
    for (const child of children || []) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  // ---- formatting ----

  function dash(value) {
    return value === null || value === undefined ? "—" : value;
  }

  function percent(fraction, digits) {
    if (typeof fraction !== "number") return "—";
    return (fraction * 100).toFixed(digits) + " %";
  }

  function ms(value) {
    if (typeof value !== "number") return "—";
    return (value < 10 ? value.toFixed(1) : Math.round(value).toString()) + " ms";
  }

  function count(value) {
    return typeof value === "number" ? value.toLocaleString("en-US") : "—";
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour12: false });
  }

  function windowText(seconds) {
    if (typeof seconds !== "number") return "";
    return seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`;
  }

  // ---- sign-in ----

  function showSignIn(message) {
    stopPolling();
    show(view.loading, false);
    show(view.overview, false);
    show(view.identity, false);
    show(view.signIn, true);
    view.signInError.textContent = message || "";
    show(view.signInError, Boolean(message));
    view.models.replaceChildren();
    view.token.value = "";
    view.token.focus();
  }

  function showSignedIn(who) {
    show(view.loading, false);
    show(view.signIn, false);
    show(view.signInError, false);
    view.who.textContent = `${who.name} (${who.role})`;
    // Without a token (--insecure-dev) there is nothing to sign out of.
    show(view.signOut, Boolean(memoryToken));
    show(view.identity, true);
    show(view.overview, true);
    startPolling();
  }

  function refusedMessage(error) {
    if (error.status === 401) {
      return "The gateway did not accept this token (401). Check it and try again.";
    }
    if (error.status === 403) {
      return "This token may not read the dashboard (403): it needs the viewer or operator role.";
    }
    return `Sign-in failed: ${error.message}.`;
  }

  async function signIn(event) {
    event.preventDefault();
    const token = view.token.value.trim();
    view.token.value = "";
    if (!token) {
      showSignIn("Enter a token.");
      return;
    }
    storeToken(token);
    try {
      showSignedIn(await api("/api/v1/whoami"));
    } catch (error) {
      forgetToken();
      showSignIn(refusedMessage(error));
    }
  }

  function signOut() {
    forgetToken();
    session += 1;
    showSignIn("");
  }

  async function start() {
    try {
      // With no token stored this asks whether the gateway needs one at all: under
      // --insecure-dev it answers 200 and the sign-in is skipped.
      showSignedIn(await api("/api/v1/whoami"));
    } catch (error) {
      if (error.status === 401 && !memoryToken) {
        showSignIn("");
      } else if (error.status === 401 || error.status === 403) {
        forgetToken();
        showSignIn(refusedMessage(error));
      } else {
        showSignIn(`The gateway did not answer as expected: ${error.message}.`);
      }
    }
  }

  // ---- polling ----

  function stopPolling() {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  }

  function startPolling() {
    stopPolling();
    session += 1;
    poll(session);
  }

  async function poll(mine) {
    try {
      // A hidden tab does not poll; it catches up when shown again.
      if (!document.hidden) {
        const [models, rollouts] = await Promise.all([
          api("/api/v1/models"),
          api("/api/v1/rollouts?active=true"),
        ]);
        if (mine !== session) return;
        render(models, rollouts);
        lastUpdate = new Date();
        const list = (models && models.models) || [];
        const span = list.length ? windowText(list[0].window_s) : "";
        view.updated.textContent =
          `Updated ${clock(lastUpdate)}` + (span ? ` · figures over the last ${span}` : "");
        show(view.pollError, false);
      }
    } catch (error) {
      if (mine !== session) return;
      if (error.status === 401) {
        forgetToken();
        showSignIn("The gateway no longer accepts this token (401). Sign in again.");
        return;
      }
      const since = lastUpdate ? ` Showing data from ${clock(lastUpdate)}.` : "";
      view.pollError.textContent = `Could not refresh at ${clock(new Date())}: ${error.message}.${since}`;
      show(view.pollError, true);
    }
    if (mine === session) {
      timer = setTimeout(() => poll(mine), POLL_MS);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer !== null) startPolling();
  });

  // ---- the overview ----

  function render(models, rollouts) {
    const list = models && Array.isArray(models.models) ? models.models : [];
    const active = new Map();
    for (const rollout of (rollouts && rollouts.rollouts) || []) {
      active.set(rollout.model, rollout);
    }
    const cards = list.map((model, index) =>
      modelCard(model, index, active.get(model.name) || null),
    );
    if (cards.length === 0) {
      cards.push(el("p", { className: "muted", text: "No models are configured." }));
    }
    view.models.replaceChildren(...cards);
  }

  function roleOf(model, version, rollout) {
    if (version.name === model.stable) return "stable";
    if (rollout && version.name === rollout.candidate) return "candidate";
    if (version.weight > 0) return "serving";
    if (version.mirror > 0) return "shadow";
    return "idle";
  }

  function modelCard(model, index, activeRollout) {
    // By position: a model's name may hold any character, an id should not.
    const title = el("h3", { text: model.name, attrs: { id: `model-${index}` } });
    const serving = model.serving
      ? el("span", { className: "badge ok", text: "serving" })
      : el("span", { className: "badge bad", text: "not serving" });
    const facts = el("p", { className: "facts" }, [
      serving,
      activeRollout ? el("span", { className: "badge busy", text: "rollout in progress" }) : null,
      `stable ${model.stable} · ${dash(model.task)}` +
        (model.sticky_key ? ` · sticky by ${model.sticky_key}` : " · no sticky key"),
    ]);
    const versions = Array.isArray(model.versions) ? model.versions : [];
    // The model's own view of its latest rollout carries the gates it waits for; the
    // list of active rollouts does not, so prefer the former when both name one rollout.
    const current =
      model.rollout && activeRollout && model.rollout.id === activeRollout.id
        ? model.rollout
        : activeRollout || model.rollout;
    return el("article", { className: "card", attrs: { "aria-labelledby": `model-${index}` } }, [
      title,
      facts,
      rolloutBox(current),
      trafficBox(versions),
      versionTable(model, versions, current),
    ]);
  }

  function rolloutBox(rollout) {
    if (!rollout) {
      return el("div", { className: "rollout" }, [el("p", { text: "No rollout yet." })]);
    }
    const running = ACTIVE_PHASES.has(rollout.phase);
    const lines = [
      el("p", {}, [
        el("strong", { text: running ? "Rollout in progress" : "Last rollout" }),
        `: ${rollout.strategy} ${rollout.stable} → ${rollout.candidate}, ${rollout.phase}`,
      ]),
    ];
    if (running) {
      lines.push(
        el("p", {
          text:
            `Step ${dash(rollout.step)} of ${dash(rollout.steps)} · candidate ` +
            `${dash(rollout.weight)} % of traffic` +
            (rollout.mirror ? `, mirrored ${rollout.mirror} %` : ""),
        }),
      );
    }
    if (rollout.message) lines.push(el("p", { className: "muted", text: rollout.message }));
    const waiting = Array.isArray(rollout.waiting) ? rollout.waiting : [];
    if (running && waiting.length) {
      lines.push(
        el("p", { text: "Waiting for:" }),
        el("ul", {}, waiting.map((gate) => el("li", { text: gate.gate }))),
      );
    }
    return el("div", { className: running ? "rollout active" : "rollout" }, lines);
  }

  function trafficBox(versions) {
    const box = el("div", { className: "traffic" });
    const weighted = versions
      .map((version, index) => ({ version, colour: `c${index % COLOURS}` }))
      .filter((entry) => entry.version.weight > 0);
    box.append(el("h4", { text: "Traffic" }));
    // The bar only draws what the legend below says in words.
    const bar = el("div", { className: "bar", attrs: { "aria-hidden": "true" } });
    for (const entry of weighted) {
      const segment = el("div", { className: `segment ${entry.colour}` });
      segment.style.width = `${clampPercent(entry.version.weight)}%`;
      bar.append(segment);
    }
    box.append(bar);
    const legend = el("ul", { className: "legend" });
    for (const entry of weighted) {
      legend.append(
        el("li", {}, [
          el("span", { className: `swatch ${entry.colour}`, attrs: { "aria-hidden": "true" } }),
          `${entry.version.name} ${entry.version.weight} %`,
        ]),
      );
    }
    if (!weighted.length) legend.append(el("li", { text: "No version has traffic." }));
    box.append(legend);

    const mirrored = versions.filter((version) => version.mirror > 0);
    if (mirrored.length) {
      box.append(el("h4", { text: "Mirrored (shadow) requests" }));
      for (const version of mirrored) {
        const track = el("div", { className: "bar", attrs: { "aria-hidden": "true" } });
        const fill = el("div", { className: "segment c5" });
        fill.style.width = `${clampPercent(version.mirror)}%`;
        track.append(fill);
        box.append(
          el("div", { className: "mirror-row" }, [
            el("span", { text: version.name }),
            track,
            el("span", { text: `${version.mirror} % of requests` }),
          ]),
        );
      }
    }
    return box;
  }

  function clampPercent(value) {
    const number = Number(value);
    return Number.isFinite(number) ? Math.min(100, Math.max(0, number)) : 0;
  }

  function versionTable(model, versions, rollout) {
    const head = el("tr", {}, [
      el("th", { text: "Version", attrs: { scope: "col" } }),
      el("th", { text: "Role", attrs: { scope: "col" } }),
      el("th", { text: "Health", attrs: { scope: "col" } }),
      el("th", { text: "Readiness", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "Weight", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "Requests", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "Errors", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "p50", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "p99", attrs: { scope: "col" } }),
    ]);
    const rows = versions.map((version) => versionRow(model, version, rollout));
    return el("div", { className: "table-wrap" }, [
      el("table", {}, [
        el("caption", { className: "visually-hidden", text: `Versions of ${model.name}` }),
        el("thead", {}, [head]),
        el("tbody", {}, rows),
      ]),
    ]);
  }

  function versionRow(model, version, rollout) {
    // Served figures where the version answers users, else what it did as a shadow.
    const served = version.served || null;
    const shadow = version.shadow || null;
    const figures = served || shadow || version.preview || null;
    const tone = version.health === "ready" ? "ok" : version.health === "failed" ? "bad" : "busy";
    const health = el("td", {}, [
      el("span", { className: `badge ${tone}`, text: version.health }),
      version.reason ? el("span", { className: "reason", text: version.reason }) : null,
    ]);
    const fleet = version.fleet;
    const readiness = el("td", {}, [
      fleet ? fleet.summary : "—",
      fleet && fleet.why_not ? el("span", { className: "reason", text: fleet.why_not }) : null,
    ]);
    let weight = `${dash(version.weight)} %`;
    if (version.mirror > 0) weight += ` (+${version.mirror} % mirror)`;
    let requests = figures ? count(figures.requests) : "—";
    if (!served && shadow) {
      requests += " shadow";
      if (typeof shadow.agreement === "number") requests += `, ${percent(shadow.agreement, 1)} agree`;
    }
    const running = rollout && ACTIVE_PHASES.has(rollout.phase) ? rollout : null;
    return el("tr", {}, [
      el("th", { text: version.name, attrs: { scope: "row" } }),
      el("td", { text: roleOf(model, version, running) }),
      health,
      readiness,
      el("td", { className: "num", text: weight }),
      el("td", { className: "num", text: requests }),
      el("td", { className: "num", text: figures ? percent(figures.error_rate, 2) : "—" }),
      el("td", { className: "num", text: figures ? ms(figures.latency_p50_ms) : "—" }),
      el("td", { className: "num", text: figures ? ms(figures.latency_p99_ms) : "—" }),
    ]);
  }

  // ---- wiring ----

  view.form.addEventListener("submit", signIn);
  view.signOut.addEventListener("click", signOut);
  start();
})();
