// rollwise dashboard: signs in with a token, then shows every model's versions,
// traffic split and rollout, read from the control API every two seconds. An operator
// also gets the rollout's commands (each confirmed in a dialog first), and a second
// view lists the event log. The view follows the URL's hash: #/models or #/events,
// or a page another script registers (window.rollwiseDashboard.registerPage), such as
// a model's or a rollout's own page.
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
  // What the event view asks for first (the newest ones) and keeps at most.
  const EVENTS_FIRST = 200;
  const EVENTS_KEPT = 1000;
  const VIEWS = { "#/models": "models", "#/events": "events" };

  // A person's commands on a rollout, as the control API takes them. `effect` says
  // what the command does, in the confirmation, before anything is sent.
  const ACTIONS = {
    pause: {
      label: "Pause",
      path: "pause",
      done: "Paused",
      effect: () => "The rollout holds at its current step; traffic stays as it is until resumed.",
    },
    resume: {
      label: "Resume",
      path: "resume",
      done: "Resumed",
      effect: () => "The rollout goes on from the step where it was paused.",
    },
    promote: {
      label: "Promote step",
      path: "promote",
      done: "Promoted the step",
      effect: () =>
        "The current step (a pause, an analysis or a test) is let go and the next one starts.",
    },
    promote_full: {
      label: "Promote fully",
      path: "promote",
      body: { full: true },
      done: "Promoted fully",
      effect: (r) => `${r.candidate} becomes stable now, skipping every remaining step.`,
    },
    abort: {
      label: "Abort",
      path: "abort",
      done: "Aborted",
      effect: (r) => `The rollout stops and every request goes to ${r.stable} again.`,
    },
    rollback: {
      label: "Roll back",
      path: "rollback",
      done: "Rolled back",
      effect: (r) =>
        r.phase === "promoted"
          ? `The version that was stable before ${r.candidate} serves every request again.`
          : `The rollout stops, recorded as a rollback, and every request goes to ${r.stable} again.`,
    },
  };

  // Which commands fit a phase (see rollwise/rollout/commands.py): an ended rollout
  // takes none but a rollback of a promotion. The API still has the last word, and
  // its refusal is shown as it says it.
  function actionsFor(rollout) {
    if (!rollout) return [];
    switch (rollout.phase) {
      case "pending":
      case "progressing":
        return ["pause", "promote", "promote_full", "abort", "rollback"];
      case "paused":
        return ["resume", "promote", "promote_full", "abort", "rollback"];
      case "promoted":
        return ["rollback"];
      default:
        return [];
    }
  }

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
    windowForm: $("window-form"),
    window: $("window"),
    pollError: $("poll-error"),
    models: $("models"),
    tabs: $("tabs"),
    tabModels: $("tab-models"),
    tabEvents: $("tab-events"),
    eventsView: $("events-view"),
    eventsUpdated: $("events-updated"),
    eventsError: $("events-error"),
    eventsCount: $("events-count"),
    eventFilters: $("event-filters"),
    eventModel: $("event-model"),
    eventKind: $("event-kind"),
    eventActor: $("event-actor"),
    events: $("events"),
    confirm: $("confirm"),
    confirmForm: $("confirm-form"),
    confirmTitle: $("confirm-title"),
    confirmWhat: $("confirm-what"),
    confirmEffect: $("confirm-effect"),
    confirmReason: $("confirm-reason"),
    confirmCancel: $("confirm-cancel"),
    confirmOk: $("confirm-ok"),
    announce: $("announce"),
  };

  // A generation number: a poll that was started before a sign-out, or before a
  // newer sign-in, must not draw over what came after it.
  let session = 0;
  let timer = null;
  let lastUpdate = null;
  // The token in use; a copy of what session storage holds, or the only copy when
  // the browser refuses storage.
  let memoryToken = storedToken();
  // Who is signed in (null when no one is): only an operator gets the commands.
  let role = null;
  let currentView = "models";
  // Pages registered by other scripts, and the one shown (with what its hash named).
  const pages = [];
  let currentPage = null;
  let pageParams = null;
  // The last answers drawn, so that a card can be drawn again at once (a command
  // sent, its answer back) without waiting for the next poll.
  let lastModels = null;
  let lastRollouts = null;
  // By model name: the rollout each card shows, a command on its way, and the last
  // command's outcome (kept across polls, until the next command on that model).
  let shownRollouts = new Map();
  const sending = new Set();
  const outcomes = new Map();
  // The command the confirmation dialog is open for, or null.
  let pending = null;
  // The event view's state: what was fetched (oldest first), for which model filter.
  const eventLog = { list: [], lastId: 0, model: null, loaded: false };
  let modelNames = [];

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

  async function api(path, options) {
    const headers = { Accept: "application/json" };
    if (memoryToken) {
      headers.Authorization = "Bearer " + memoryToken;
    }
    const request = {
      headers,
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    };
    if (options && options.method) request.method = options.method;
    if (options && options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      request.body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await fetch(path, request);
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

  function rate(perSecond) {
    if (typeof perSecond !== "number") return "—";
    return perSecond >= 10 ? Math.round(perSecond).toString() : perSecond.toFixed(2);
  }

  // Accuracy with the labels it rests on: a figure from three labels is no figure.
  function accuracy(figures) {
    if (typeof figures.accuracy !== "number") return "—";
    return `${percent(figures.accuracy, 1)} (${count(figures.feedback)} labels)`;
  }

  function count(value) {
    return typeof value === "number" ? value.toLocaleString("en-US") : "—";
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour12: false });
  }

  function stamp(seconds) {
    if (typeof seconds !== "number") return "—";
    const date = new Date(seconds * 1000);
    const two = (n) => String(n).padStart(2, "0");
    return (
      `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
      `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`
    );
  }

  // One of an event's figures, short: a float to 4 significant digits, a nested
  // value as JSON cut at 80 characters.
  function figure(value) {
    if (typeof value === "number") {
      return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
    }
    if (typeof value === "string") return value;
    if (value === null || typeof value === "boolean") return String(value);
    const text = JSON.stringify(value);
    return text.length > 80 ? text.slice(0, 79) + "…" : text;
  }

  function windowText(seconds) {
    if (typeof seconds !== "number") return "";
    if (seconds % 3600 === 0) return `${seconds / 3600} h`;
    return seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`;
  }

  // ---- sign-in ----

  function showSignIn(message) {
    stopPolling();
    role = null;
    closeConfirm();
    forgetViews();
    show(view.loading, false);
    show(view.overview, false);
    show(view.eventsView, false);
    for (const page of pages) show(page.section, false);
    show(view.tabs, false);
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
    show(view.tabs, true);
    role = who.role;
    showView();
  }

  // What one signed-in person saw: nothing of it may show to the next one.
  function forgetViews() {
    lastModels = null;
    lastRollouts = null;
    shownRollouts = new Map();
    sending.clear();
    outcomes.clear();
    modelNames = [];
    resetEventLog(null);
    view.events.replaceChildren();
    view.eventsCount.textContent = "";
    view.eventsUpdated.textContent = "";
    for (const select of [view.eventModel, view.eventKind, view.eventActor]) {
      select.replaceChildren(select.options[0]);
    }
    for (const page of pages) page.reset();
  }

  // ---- the two views, by the URL's hash ----

  function showView() {
    const hash = window.location.hash;
    currentPage = null;
    pageParams = null;
    currentView = VIEWS[hash] || "models";
    if (!VIEWS[hash]) {
      for (const page of pages) {
        const params = page.match(hash);
        if (params) {
          currentPage = page;
          pageParams = params;
          currentView = "page";
          break;
        }
      }
    }
    const events = currentView === "events";
    show(view.overview, currentView === "models");
    show(view.eventsView, events);
    for (const page of pages) show(page.section, page === currentPage);
    const tabOf = currentPage ? currentPage.tab || "models" : currentView;
    for (const [tab, mine] of [
      [view.tabModels, tabOf === "models"],
      [view.tabEvents, tabOf === "events"],
    ]) {
      if (mine) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    startPolling();
  }

  window.addEventListener("hashchange", () => {
    if (role !== null) showView();
  });

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
    const events = currentView === "events";
    const page = currentPage;
    const errorLine = page ? page.errorLine : events ? view.eventsError : view.pollError;
    try {
      // A hidden tab does not poll; it catches up when shown again.
      if (!document.hidden) {
        if (page) {
          await page.refresh(pageParams, () => mine === session && role !== null);
        } else if (events) {
          await pollEvents(mine);
        } else {
          await pollModels(mine);
        }
        if (mine !== session) return;
        show(errorLine, false);
      }
    } catch (error) {
      if (mine !== session) return;
      if (error.status === 401) {
        forgetToken();
        showSignIn("The gateway no longer accepts this token (401). Sign in again.");
        return;
      }
      const since = lastUpdate ? ` Showing data from ${clock(lastUpdate)}.` : "";
      errorLine.textContent = `Could not refresh at ${clock(new Date())}: ${error.message}.${since}`;
      show(errorLine, true);
    }
    if (mine === session) {
      timer = setTimeout(() => poll(mine), POLL_MS);
    }
  }

  async function pollModels(mine) {
    const [models, rollouts] = await Promise.all([
      api(`/api/v1/models?window_s=${encodeURIComponent(view.window.value)}`),
      api("/api/v1/rollouts?active=true"),
    ]);
    if (mine !== session) return;
    lastModels = models;
    lastRollouts = rollouts;
    render(models, rollouts);
    lastUpdate = new Date();
    const list = (models && models.models) || [];
    setModelNames(list.map((model) => model.name));
    const span = list.length ? windowText(list[0].window_s) : "";
    view.updated.textContent =
      `Updated ${clock(lastUpdate)}` + (span ? ` · figures over the last ${span}` : "");
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer !== null) startPolling();
  });

  // ---- the overview ----

  function render(models, rollouts) {
    const list = models && Array.isArray(models.models) ? models.models : [];
    shownRollouts = new Map();
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
    // Cards are drawn anew at every poll: a keyboard user's focus on a command button
    // must survive that, so it moves to the same button in the new card.
    const focused = document.activeElement;
    const key = focused && view.models.contains(focused) ? focused.dataset.key : undefined;
    view.models.replaceChildren(...cards);
    if (key) focusKey(key);
  }

  function focusKey(key) {
    for (const node of document.querySelectorAll("main [data-key]")) {
      if (node.dataset.key === key) {
        node.focus();
        return true;
      }
    }
    return false;
  }

  function redraw() {
    if (lastModels !== null) render(lastModels, lastRollouts);
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
    const title = el("h3", { attrs: { id: `model-${index}` } }, [
      el("a", { text: model.name, attrs: { href: pageLink("models", model.name) } }),
    ]);
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
    if (current) shownRollouts.set(model.name, current);
    return el("article", { className: "card", attrs: { "aria-labelledby": `model-${index}` } }, [
      title,
      facts,
      rolloutBox(current, model.name),
      actionsBox(model, index, current),
      trafficBox(versions),
      versionTable(model, versions, current),
    ]);
  }

  // A page of one model or its rollout: the name is encoded, so any character in it
  // stays part of the name.
  function pageLink(kind, name) {
    return `#/${kind}/${encodeURIComponent(name)}`;
  }

  function rolloutBox(rollout, modelName) {
    const details = el("a", {
      className: "more",
      text: rollout ? "Rollout details" : "Rollouts",
      attrs: {
        href: pageLink("rollouts", modelName),
        "aria-label": `${rollout ? "Rollout details" : "Rollouts"} of ${modelName}`,
      },
    });
    if (!rollout) {
      return el("div", { className: "rollout" }, [el("p", { text: "No rollout yet. " }, [details])]);
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
    lines.push(el("p", {}, [details]));
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
      el("th", { className: "num", text: "Req/s", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "Errors", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "p50", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "p99", attrs: { scope: "col" } }),
      el("th", { className: "num", text: "Accuracy", attrs: { scope: "col" } }),
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
    const perSecond =
      figures && typeof figures.requests === "number" && model.window_s > 0
        ? figures.requests / model.window_s
        : null;
    return el("tr", {}, [
      el("th", { text: version.name, attrs: { scope: "row" } }),
      el("td", { text: roleOf(model, version, running) }),
      health,
      readiness,
      el("td", { className: "num", text: weight }),
      el("td", { className: "num", text: requests }),
      el("td", { className: "num", text: rate(perSecond) }),
      el("td", { className: "num", text: figures ? percent(figures.error_rate, 2) : "—" }),
      el("td", { className: "num", text: figures ? ms(figures.latency_p50_ms) : "—" }),
      el("td", { className: "num", text: figures ? ms(figures.latency_p99_ms) : "—" }),
      el("td", { className: "num", text: figures ? accuracy(figures) : "—" }),
    ]);
  }

  // ---- an operator's commands on a rollout ----

  function actionsBox(model, index, rollout) {
    const names = role === "operator" ? actionsFor(rollout) : [];
    const busy = sending.has(model.name);
    const outcome = outcomes.get(model.name);
    if (!names.length && !busy && !outcome) return null;
    const box = el("div", { className: "actions" });
    if (names.length) {
      const group = el("div", {
        className: "action-buttons",
        attrs: { role: "group", "aria-label": `Commands for the rollout of ${model.name}` },
      });
      for (const name of names) {
        const spec = ACTIONS[name];
        const button = el("button", {
          className: name === "abort" || name === "rollback" ? "danger" : "",
          text: spec.label,
          // By position and command: what keeps a focused button focused on a redraw.
          attrs: { type: "button", "data-key": `${index}:${name}` },
        });
        button.disabled = busy;
        button.addEventListener("click", () => openConfirm(model.name, index, name));
        group.append(button);
      }
      box.append(group);
    }
    if (busy) {
      box.append(el("p", { className: "outcome muted", text: "Sending…" }));
    } else if (outcome) {
      box.append(el("p", { className: `outcome ${outcome.ok ? "ok" : "bad"}`, text: outcome.text }));
    }
    return box;
  }

  function rolloutLine(rollout) {
    let line =
      `Rollout #${rollout.id} of ${rollout.model}: ${rollout.strategy} ` +
      `${rollout.stable} → ${rollout.candidate}, ${rollout.phase}`;
    if (ACTIVE_PHASES.has(rollout.phase)) {
      line += `, step ${dash(rollout.step)} of ${dash(rollout.steps)}, candidate at ${dash(rollout.weight)} %`;
    }
    return line + ".";
  }

  function openConfirm(modelName, index, action) {
    const rollout = shownRollouts.get(modelName);
    if (!rollout || view.confirm.open || sending.has(modelName)) return;
    const spec = ACTIONS[action];
    pending = { model: modelName, action, rolloutId: rollout.id, key: `${index}:${action}` };
    view.confirmTitle.textContent = `${spec.label} — ${modelName}, rollout #${rollout.id}`;
    view.confirmWhat.textContent = rolloutLine({ ...rollout, model: modelName });
    view.confirmEffect.textContent = spec.effect(rollout);
    view.confirmOk.textContent = `Confirm ${spec.label.toLowerCase()}`;
    view.confirmOk.className = action === "abort" || action === "rollback" ? "danger" : "primary";
    view.confirmReason.value = "";
    view.confirm.showModal();
    view.confirmReason.focus();
  }

  function closeConfirm() {
    pending = null;
    if (view.confirm.open) view.confirm.close();
  }

  // The button that opened the dialog may have been redrawn meanwhile: focus its
  // successor, or leave focus where the browser put it.
  function refocus(key) {
    const active = document.activeElement;
    if (!active || active === document.body || !document.contains(active)) focusKey(key);
  }

  async function sendCommand(chosen, reason) {
    const spec = ACTIONS[chosen.action];
    const shown = shownRollouts.get(chosen.model);
    if (!shown || shown.id !== chosen.rolloutId) {
      // Sent now, the command would reach a rollout the person did not confirm it for.
      settle(chosen, {
        ok: false,
        text: `${spec.label} not sent: the model's rollout changed while the dialog was open. Look again.`,
      });
      return;
    }
    const token = memoryToken;
    const body = { ...(spec.body || {}) };
    if (reason) body.reason = reason;
    sending.add(chosen.model);
    outcomes.delete(chosen.model);
    redraw();
    let outcome;
    try {
      const path = `/api/v1/rollouts/${encodeURIComponent(chosen.model)}/${spec.path}`;
      const rollout = await api(path, { method: "POST", body });
      outcome = {
        ok: true,
        text:
          `${spec.done} at ${clock(new Date())}: rollout #${rollout.id} is now ${rollout.phase}` +
          (rollout.message ? ` — ${rollout.message}` : "."),
      };
    } catch (error) {
      if (token !== memoryToken || role === null) return;
      if (error.status === 401) {
        forgetToken();
        showSignIn("The gateway no longer accepts this token (401). Sign in again.");
        return;
      }
      outcome = { ok: false, text: `${spec.label} failed at ${clock(new Date())}: ${error.message}` };
    }
    // Signed out (or in as someone else) meanwhile: the answer is not theirs to see.
    if (token !== memoryToken || role === null) return;
    settle(chosen, outcome);
    // The card or page shows the rollout's new state from a poll started now.
    if (currentView !== "events") startPolling();
  }

  function settle(chosen, outcome) {
    sending.delete(chosen.model);
    outcomes.set(chosen.model, outcome);
    view.announce.textContent = outcome.text;
    redraw();
    refocus(chosen.key);
  }

  view.confirmForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = pending;
    const reason = view.confirmReason.value.trim();
    pending = null;
    view.confirm.close();
    if (chosen) sendCommand(chosen, reason);
  });
  view.confirmCancel.addEventListener("click", () => view.confirm.close());
  // Escape, the Cancel button and a confirm all end here.
  view.confirm.addEventListener("close", () => {
    const left = pending;
    pending = null;
    if (left) refocus(left.key);
  });

  // ---- the event log ----

  function resetEventLog(model) {
    eventLog.list = [];
    eventLog.lastId = 0;
    eventLog.model = model;
    eventLog.loaded = false;
  }

  function setModelNames(names) {
    if (names.join("\n") === modelNames.join("\n")) return;
    modelNames = names;
    fillSelect(view.eventModel, names);
  }

  // Keeps the first option (all of them) and the current choice, even one that is no
  // longer among the values; left alone when nothing changed, so an open list stays.
  function fillSelect(select, values) {
    const chosen = select.value;
    const wanted = [...new Set(values)];
    if (chosen && !wanted.includes(chosen)) wanted.push(chosen);
    wanted.sort();
    const present = Array.from(select.options)
      .slice(1)
      .map((option) => option.value);
    if (present.join("\n") === wanted.join("\n")) return;
    const all = select.options[0];
    select.replaceChildren(all, ...wanted.map((value) => el("option", { text: value, attrs: { value } })));
    select.value = chosen;
  }

  async function pollEvents(mine) {
    const model = view.eventModel.value;
    if (eventLog.model !== model) resetEventLog(model);
    const query = new URLSearchParams();
    if (model) query.set("model", model);
    if (eventLog.loaded) {
      // Only what came after the newest one held.
      query.set("after_id", String(eventLog.lastId));
      query.set("limit", String(EVENTS_KEPT));
    } else {
      query.set("latest", "true");
      query.set("limit", String(EVENTS_FIRST));
    }
    const asks = [api(`/api/v1/events?${query}`)];
    if (!modelNames.length) asks.push(api("/api/v1/models"));
    const [answer, models] = await Promise.all(asks);
    if (mine !== session || eventLog.model !== model) return;
    if (models) setModelNames(((models && models.models) || []).map((entry) => entry.name));
    const fresh = answer && Array.isArray(answer.events) ? answer.events : [];
    const before = eventLog.lastId;
    for (const event of fresh) {
      if (event && typeof event.id === "number" && event.id > eventLog.lastId) {
        eventLog.list.push(event);
        eventLog.lastId = event.id;
      }
    }
    if (eventLog.list.length > EVENTS_KEPT) {
      eventLog.list.splice(0, eventLog.list.length - EVENTS_KEPT);
    }
    if (!eventLog.loaded || eventLog.lastId !== before) {
      eventLog.loaded = true;
      fillSelect(view.eventKind, eventLog.list.map((event) => String(event.kind)));
      fillSelect(view.eventActor, eventLog.list.map((event) => String(event.actor)));
      renderEvents();
    }
    lastUpdate = new Date();
    view.eventsUpdated.textContent = `Updated ${clock(lastUpdate)}`;
  }

  function renderEvents() {
    const kind = view.eventKind.value;
    const actor = view.eventActor.value;
    const rows = [];
    for (let i = eventLog.list.length - 1; i >= 0; i -= 1) {
      const event = eventLog.list[i];
      if ((kind && String(event.kind) !== kind) || (actor && String(event.actor) !== actor)) continue;
      rows.push(eventRow(event));
    }
    const total = eventLog.list.length;
    view.eventsCount.textContent = total
      ? `${rows.length} of the ${total} latest events, newest first.`
      : "";
    if (!rows.length) {
      const text = total ? "No event matches these filters." : "No events yet.";
      rows.push(el("tr", {}, [el("td", { className: "muted", text, attrs: { colspan: "6" } })]));
    }
    view.events.replaceChildren(...rows);
  }

  function eventRow(event) {
    const data = event.data && typeof event.data === "object" ? Object.entries(event.data) : [];
    const seconds = Number(event.at_s);
    const when = Number.isFinite(seconds)
      ? el("time", { text: stamp(seconds), attrs: { datetime: new Date(seconds * 1000).toISOString() } })
      : "—";
    const figures = data.length
      ? el(
          "ul",
          { className: "figures" },
          data.map(([name, value]) => el("li", { text: `${name}=${figure(value)}` })),
        )
      : "—";
    return el("tr", { attrs: { "data-id": String(event.id) } }, [
      el("td", { className: "when" }, [when]),
      el("td", { text: dash(event.model) }),
      el("td", { className: "kind", text: dash(event.kind) }),
      el("td", { text: dash(event.actor) }),
      el("td", { className: "message", text: dash(event.message) }),
      el("td", {}, [figures]),
    ]);
  }

  view.eventFilters.addEventListener("submit", (event) => event.preventDefault());
  view.eventModel.addEventListener("change", () => {
    // Another model: fetched anew from the API, so its older events show too.
    resetEventLog(view.eventModel.value);
    view.events.replaceChildren();
    view.eventsCount.textContent = "Loading…";
    if (role !== null && currentView === "events") startPolling();
  });
  view.eventKind.addEventListener("change", renderEvents);
  view.windowForm.addEventListener("submit", (event) => event.preventDefault());
  view.window.addEventListener("change", () => {
    if (role !== null && currentView === "models") startPolling();
  });
  view.eventActor.addEventListener("change", renderEvents);

  // ---- wiring ----

  view.tabModels.setAttribute("href", "#/models");
  view.tabEvents.setAttribute("href", "#/events");
  view.form.addEventListener("submit", signIn);
  view.signOut.addEventListener("click", signOut);

  // ---- what the pages of other scripts share ----

  // A page: { name, tab ("models" or "events": the tab it belongs under), section (its
  // own hidden <section> in <main>), errorLine (where a failed refresh is said),
  // match(hash) → params or null, refresh(params, isCurrent) → Promise (draws; called
  // every POLL_MS while shown, isCurrent() false once its answer is stale), reset()
  // (signed out: forget everything drawn) }.
  function registerPage(page) {
    for (const name of ["name", "section", "errorLine", "match", "refresh", "reset"]) {
      if (!page[name]) throw new Error(`a dashboard page needs ${name}`);
    }
    pages.push(page);
    page.section.hidden = true;
  }

  // The commands an operator may give the rollout a page shows, as buttons that open
  // the same confirmation dialog as the overview's cards; null for a viewer or an
  // ended rollout. `key` tells this page's buttons from a card's.
  function commandBox(modelName, rollout, key) {
    if (rollout) shownRollouts.set(modelName, rollout);
    return actionsBox({ name: modelName }, key, rollout);
  }

  window.rollwiseDashboard = Object.freeze({
    api,
    pageLink,
    el,
    show,
    format: Object.freeze({ dash, percent, ms, count, clock, stamp, figure, windowText }),
    role: () => role,
    colours: COLOURS,
    activePhases: ACTIVE_PHASES,
    pollMs: POLL_MS,
    registerPage,
    commandBox,
    refresh: () => {
      if (role !== null) startPolling();
    },
    announce: (text) => {
      view.announce.textContent = text;
    },
  });

  // Deferred scripts run in order before DOMContentLoaded: every page is registered
  // by the time the first view is chosen.
  document.addEventListener("DOMContentLoaded", start);
})();
