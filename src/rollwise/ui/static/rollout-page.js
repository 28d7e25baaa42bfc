// rollwise dashboard, a rollout's own page (#/rollouts/<model>): the model's latest
// rollout with its steps, the verdict of every gate, an A/B test's effect drawn against
// the smallest effect it looks for, and an operator's commands; below, an operator
// starts a rollout from a YAML spec after a dry run shows what it would do.
//
// It reads GET /api/v1/rollouts/{model} (the spec, its steps and the whole status)
// and GET /api/v1/models/{model} (under `rollout`: the gates it waits for and how many
// more samples each needs), every two seconds while shown. Every text from the API
// goes in through textContent or createElement, never as markup.
"use strict";

(() => {
  const shared = window.rollwiseDashboard;
  // Without the overview's script there is nothing to sign in with or to poll.
  if (!shared) return;
  const { api, el, show, format, pageLink } = shared;
  const { dash, figure, stamp, clock, count } = format;

  const SVG_NS = "http://www.w3.org/2000/svg";
  // The metrics a larger value of is better (rollwise/analysis/gates.py); the others
  // (error rates, latencies, MAE, RMSE) are better smaller.
  const HIGHER_IS_BETTER = new Set(["accuracy", "reward", "shadow_agreement"]);
  // rollwise/rollout/spec.py, RollbackPolicy: an analysis with no time limit of its
  // own gives up after this, unless the spec's rollback section says otherwise.
  const DEFAULT_INCONCLUSIVE_AFTER_S = 900;
  const PHASE_TONE = {
    pending: "busy",
    progressing: "busy",
    paused: "busy",
    promoted: "ok",
    validated: "ok",
    rolled_back: "bad",
    failed: "bad",
    no_difference: "neutral",
    inconclusive: "neutral",
  };
  const VERDICT_TONE = { pass: "ok", fail: "bad", inconclusive: "busy" };
  const OUTCOME_TONE = { candidate_better: "ok", stable_better: "bad", invalid: "bad", continue: "busy" };
  // An A/B test's decision (rollwise/analysis/experiment.py, Outcome), in words.
  const OUTCOME_WORDS = {
    continue: "undecided: the test goes on",
    candidate_better: "the candidate is better",
    stable_better: "the stable version is better",
    no_difference: "no difference larger than the smallest effect looked for",
    inconclusive: "inconclusive at the planned size",
    invalid: "invalid: the traffic split is not what was configured",
  };

  // ---- the page's own section, built once ----

  const title = el("h2", { text: "Rollout", attrs: { id: "rollout-page-title" } });
  const updated = el("p", { className: "muted" });
  const modelLink = el("a", { text: "Model details" });
  const errorLine = el("p", { className: "notice", attrs: { role: "status" } });
  errorLine.hidden = true;
  // Drawn anew at every refresh.
  const live = el("div", { className: "rp-live" });
  // Drawn once per model: it holds what the operator types, which a poll must not wipe.
  const starter = el("div", { className: "rp-starter" });
  const back = el("a", { text: "← All models", attrs: { href: "#/models" } });
  const section = el(
    "section",
    {
      className: "rollout-page",
      attrs: { id: "rollout-page", "aria-labelledby": "rollout-page-title" },
    },
    [
      el("p", { className: "rp-nav" }, [back, " · ", modelLink]),
      el("div", { className: "overview-head" }, [title, updated]),
      errorLine,
      live,
      starter,
    ],
  );
  const main = document.getElementById("main");
  main.insertBefore(section, document.getElementById("confirm"));

  // Which model the page shows, and a generation number: an answer to a request made
  // for another model, or before a sign-out, must not draw over what came after it.
  let shownModel = null;
  let generation = 0;
  // What an operator typed, by model, for as long as they are signed in; and the YAML
  // form (built for the first operator, dropped at a sign-out).
  const drafts = new Map();
  let form = null;

  // ---- small helpers ----

  function duration(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const minutes = Math.floor(s / 60);
    if (minutes < 60) return s % 60 ? `${minutes} min ${s % 60} s` : `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  }

  // A figure as the API gives it: a number, or a string for an infinite one ("inf").
  function num(value) {
    if (typeof value === "number") return figure(value);
    if (value === "inf" || value === "Infinity") return "∞";
    if (value === "-inf" || value === "-Infinity") return "−∞";
    return dash(value === undefined ? null : value);
  }

  // A probability as a percent that never rounds to a certainty it is not.
  function chance(p) {
    if (p > 0.999) return "over 99.9 %";
    if (p < 0.001) return "under 0.1 %";
    return format.percent(p, 1);
  }

  function finite(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function words(phase) {
    return String(phase).replace(/_/g, " ");
  }

  function phaseBadge(phase) {
    return el("span", { className: `badge ${PHASE_TONE[phase] || "neutral"}`, text: words(phase) });
  }

  function verdictBadge(verdict) {
    const tone = VERDICT_TONE[verdict] || "neutral";
    return el("span", { className: `badge ${tone}`, text: dash(verdict) });
  }

  function panel(heading, children, className) {
    return el("section", { className: `panel rp-panel ${className || ""}` }, [
      el("h3", { text: heading }),
      ...children,
    ]);
  }

  // A term and its value, for the <dl> lists of figures.
  function pair(term, value) {
    return [el("dt", { text: term }), el("dd", {}, [value])];
  }

  function figures(entries) {
    const pairs = entries.flatMap(([term, value]) => pair(term, value));
    return el("dl", { className: "rp-figures" }, pairs);
  }

  function missing(error) {
    if (error && error.status === 404) return null;
    throw error;
  }

  // ---- the page's life: match, refresh, reset ----

  function match(hash) {
    const found = /^#\/rollouts\/(.+)$/.exec(hash);
    if (!found) return null;
    try {
      return { model: decodeURIComponent(found[1]) };
    } catch (_) {
      return null;
    }
  }

  async function refresh(params, isCurrent) {
    const model = params.model;
    if (model !== shownModel) enterModel(model);
    const path = encodeURIComponent(model);
    const [status, rollout] = await Promise.all([
      api(`/api/v1/models/${path}`).catch(missing),
      api(`/api/v1/rollouts/${path}`).catch(missing),
    ]);
    if (!isCurrent() || model !== shownModel) return;
    draw(model, status, rollout);
    syncStarter(model, status);
    updated.textContent = `Updated ${clock(new Date())}`;
  }

  function enterModel(model) {
    shownModel = model;
    generation += 1;
    title.textContent = `Rollout of ${model}`;
    modelLink.setAttribute("href", pageLink("models", model));
    modelLink.setAttribute("aria-label", `Model details of ${model}`);
    live.replaceChildren(el("p", { className: "muted", text: "Loading…" }));
    updated.textContent = "";
    leaveStarter();
  }

  // Signed out: nothing of what one person saw or typed may show to the next.
  function reset() {
    shownModel = null;
    generation += 1;
    live.replaceChildren();
    updated.textContent = "";
    drafts.clear();
    leaveStarter();
    starter.replaceChildren();
    form = null;
  }

  // ---- drawing the rollout ----

  function draw(model, status, rollout) {
    // Redrawn at every poll: a keyboard user's focus on a command button moves to the
    // same button in the new drawing.
    const focused = document.activeElement;
    const key = focused && live.contains(focused) ? focused.dataset.key : undefined;
    if (status === null) {
      live.replaceChildren(
        el("p", { className: "notice", text: `There is no model named ${model}.` }),
      );
      return;
    }
    if (rollout === null) {
      live.replaceChildren(
        panel("No rollout yet", [
          el("p", {
            text: `${model} has never had a rollout. Its stable version is ${dash(status.stable)}.`,
          }),
        ]),
      );
      return;
    }
    // The model's view names the same rollout when it is the latest: it adds the gates
    // the rollout waits for.
    const summary = status.rollout && status.rollout.id === rollout.id ? status.rollout : null;
    // The gateway's clock when it answered: a browser's clock may be set otherwise.
    const nowS = typeof rollout.now_s === "number" ? rollout.now_s : Date.now() / 1000;
    const parts = [headPanel(rollout, summary), shared.commandBox(model, rollout, "rollout-page")];
    const columns = el("div", { className: "rp-columns" }, [
      timelinePanel(rollout, nowS),
      el("div", { className: "rp-stack" }, [
        experimentSteps(rollout).length ? experimentPanel(rollout) : null,
        gatesPanel(rollout),
      ]),
    ]);
    parts.push(columns);
    live.replaceChildren(...parts.filter(Boolean));
    if (key) {
      const again = Array.from(live.querySelectorAll("[data-key]")).find(
        (node) => node.dataset.key === key,
      );
      if (again) again.focus();
    }
  }

  function headPanel(rollout, summary) {
    const status = rollout.status || {};
    const active = shared.activePhases.has(rollout.phase);
    const lines = [
      el("p", { className: "rp-title" }, [
        el("strong", { text: `#${rollout.id} ${rollout.strategy}` }),
        ` ${rollout.stable} → ${rollout.candidate} `,
        phaseBadge(rollout.phase),
      ]),
    ];
    if (active) {
      let where =
        `Step ${dash(rollout.step)} of ${dash(rollout.steps)} · candidate at ` +
        `${dash(rollout.weight)} % of traffic`;
      if (rollout.mirror) where += `, ${rollout.mirror} % of requests mirrored to it`;
      lines.push(el("p", { text: where }));
    }
    if (rollout.message) {
      lines.push(labelled("rp-message", "Why: ", rollout.message));
    }
    const spec = rollout.spec || {};
    if (typeof spec.description === "string" && spec.description) {
      lines.push(labelled("rp-description", "Description: ", spec.description));
    }
    const when = [`started ${stamp(status.started_s)}`];
    if (typeof status.finished_s === "number") when.push(`ended ${stamp(status.finished_s)}`);
    if (status.outcome) when.push(`outcome ${words(status.outcome)}`);
    when.push(`last change by ${dash(status.actor)}`);
    lines.push(el("p", { className: "muted", text: when.join(" · ") }));
    const waiting = summary && Array.isArray(summary.waiting) ? summary.waiting : [];
    if (active && waiting.length) {
      lines.push(
        el("p", { className: "rp-waiting-title", text: "Waiting for:" }),
        el(
          "ul",
          { className: "rp-waiting" },
          waiting.map((entry) =>
            el("li", { text: `${entry.gate}: ${horizonText(entry.horizon)}` }),
          ),
        ),
      );
    }
    const attrs = { "aria-label": "Rollout summary" };
    return el("section", { className: "panel rp-head", attrs }, lines);
  }

  // A line that starts with a word in bold, then the API's text.
  function labelled(className, label, text) {
    return el("p", { className }, [el("strong", { text: label }), text]);
  }

  // How much longer an undecided gate needs (rollwise/analysis/horizon.py).
  function horizonText(horizon) {
    if (!horizon) return "how much longer is not known";
    if (typeof horizon.more !== "number") return `cannot tell (${horizon.why || "no estimate"})`;
    let text = `${horizon.at_least ? "at least " : ""}${count(horizon.more)} more samples per arm`;
    if (finite(horizon.expected_s)) {
      text += `, about ${duration(horizon.expected_s)} at the current rate`;
    } else {
      text += ", no rate measured yet to tell how long";
    }
    return text;
  }

  // ---- the timeline of steps ----

  function stepKind(step) {
    return step && typeof step === "object" ? Object.keys(step)[0] : "";
  }

  // Each step's state in words: the colours and markers only repeat them.
  const STEP_STATES = {
    done: "done",
    current: "current",
    stopped: "stopped here",
    next: "to come",
    skipped: "not run",
  };

  function timelinePanel(rollout, nowS) {
    const plan = Array.isArray(rollout.plan) ? rollout.plan : [];
    const texts = Array.isArray(rollout.plan_text) ? rollout.plan_text : [];
    const status = rollout.status || {};
    const index = typeof status.step_index === "number" ? status.step_index : 0;
    const active = shared.activePhases.has(rollout.phase);
    const list = el("ol", { className: "rp-timeline" });
    texts.forEach((text, i) => {
      let state;
      if (i < index) state = "done";
      else if (i === index) state = active ? "current" : "stopped";
      else state = active ? "next" : "skipped";
      const item = el("li", { className: `rp-step ${state}` }, [
        el("span", { className: "rp-step-mark", text: STEP_STATES[state] }),
        el("span", { className: "rp-step-text", text }),
      ]);
      if (state === "current") {
        item.setAttribute("aria-current", "step");
        item.append(...currentStepLines(rollout, plan[i], nowS));
      }
      list.append(item);
    });
    if (!texts.length) {
      list.append(el("li", { className: "muted", text: "This rollout's spec has no steps to show." }));
    }
    return panel("Steps", [list], "rp-steps");
  }

  // How long the current step has run and, where it has a time limit, what is left.
  function currentStepLines(rollout, step, nowS) {
    const status = rollout.status || {};
    const paused = rollout.phase === "paused";
    const elapsed = paused
      ? typeof status.paused_elapsed_s === "number"
        ? status.paused_elapsed_s
        : null
      : typeof status.step_started_s === "number" && status.step_started_s > 0
        ? Math.max(0, nowS - status.step_started_s)
        : null;
    const lines = [];
    if (elapsed !== null) {
      lines.push(
        paused
          ? `Paused after ${duration(elapsed)} in this step.`
          : `In this step for ${duration(elapsed)} (since ${stamp(status.step_started_s)}).`,
      );
    }
    const limit = stepLimit(rollout, step);
    if (limit) {
      const left = elapsed === null ? "" : `, ${duration(Math.max(0, limit.seconds - elapsed))} left`;
      lines.push(`${limit.what} ${duration(limit.seconds)}${left}.`);
    } else if (stepKind(step) === "pause") {
      lines.push("Waits for an operator's promote.");
    }
    return lines.map((text) => el("span", { className: "rp-step-time", text }));
  }

  function stepLimit(rollout, step) {
    const kind = stepKind(step);
    const options = kind ? step[kind] || {} : {};
    if (kind === "pause" && typeof options.duration_s === "number") {
      return { seconds: options.duration_s, what: "Holds for" };
    }
    if (kind === "analyze") {
      const policy = (rollout.spec && rollout.spec.rollback) || {};
      const seconds =
        typeof options.max_duration_s === "number"
          ? options.max_duration_s
          : typeof policy.on_inconclusive_after_s === "number"
            ? policy.on_inconclusive_after_s
            : DEFAULT_INCONCLUSIVE_AFTER_S;
      const then = policy.on_inconclusive === "pause" ? "pauses" : "rolls back";
      return { seconds, what: `Undecided, it ${then} after` };
    }
    if (kind === "experiment" && typeof options.max_duration_s === "number") {
      const what = "Undecided, the A/B test ends inconclusive after";
      return { seconds: options.max_duration_s, what };
    }
    return null;
  }

  // ---- gates ----

  function gatesPanel(rollout) {
    const judgement = (rollout.status && rollout.status.judgement) || {};
    const active = shared.activePhases.has(rollout.phase);
    const step = objectOrNull(judgement.step);
    const background = objectOrNull(judgement.background);
    const parts = [];
    if (step) parts.push(...judgementPart("This step's analysis", step));
    if (background && step && sameGates(step, background)) {
      // A canary's analysis judges the spec's gates, which are also its background
      // gates: the one table says both.
      parts.push(
        el("p", { className: "muted rp-small" }, [
          "Background gates (judged at every tick): the same gates with the same figures, ",
          verdictBadge(background.verdict),
        ]),
      );
    } else if (background) {
      parts.push(...judgementPart("Background gates (judged at every tick)", background));
    }
    if (!parts.length) {
      const text = active ? "No gate has been judged yet." : "No gate was judged.";
      parts.push(el("p", { className: "muted", text }));
    }
    return panel(active ? "Gates" : "Gates (last judgement)", parts, "rp-gates");
  }

  function objectOrNull(value) {
    return value && typeof value === "object" ? value : null;
  }

  function sameGates(one, other) {
    return JSON.stringify(one.gates || []) === JSON.stringify(other.gates || []);
  }

  // One judgement: its verdict, then each gate with its figures. A list of small
  // blocks rather than a table: eight figures a gate fit a phone's width this way.
  function judgementPart(heading, part) {
    const gates = Array.isArray(part.gates) ? part.gates : [];
    const out = [
      el("h4", { text: heading }),
      el("p", { className: "rp-verdict" }, [verdictBadge(part.verdict), ` ${dash(part.reason)}`]),
      gates.length
        ? el("ul", { className: "rp-gate-list", attrs: { "aria-label": heading } }, gates.map(gateItem))
        : el("p", { className: "muted", text: "No gates." }),
    ];
    if (part.srm) out.push(srmLine(part.srm));
    if (part.correction) {
      out.push(
        el("p", {
          className: "muted rp-small",
          text: `Fail decisions corrected for several gates (${part.correction}).`,
        }),
      );
    }
    return out;
  }

  function gateItem(gate) {
    const values = [];
    if (present(gate.stable_value)) values.push(`stable ${num(gate.stable_value)}`);
    if (present(gate.candidate_value)) values.push(`candidate ${num(gate.candidate_value)}`);
    let pFail = num(gate.p_fail);
    if (typeof gate.p_fail_adjusted === "number") pFail += ` (adjusted ${num(gate.p_fail_adjusted)})`;
    const entries = [
      ["Estimate", num(gate.estimate) + (values.length ? ` (${values.join(", ")})` : "")],
      ["Interval", intervalText(gate.interval)],
      ["Bound", num(gate.limit)],
      ["p-value of a breach", pFail],
      ["p-value of staying within", num(gate.p_pass)],
    ];
    if (present(gate.e_value)) entries.push(["e-value", num(gate.e_value)]);
    const needs = gate.verdict === "inconclusive" ? horizonText(gate.horizon) : "nothing: decided";
    entries.push(
      ["Samples (stable / candidate)", `${count(gate.n_stable)} / ${count(gate.n_candidate)}`],
      ["Still needs", needs],
    );
    return el("li", { className: `rp-gate ${VERDICT_TONE[gate.verdict] || ""}` }, [
      el("p", { className: "rp-gate-head" }, [
        verdictBadge(gate.verdict),
        el("strong", { text: dash(gate.description || gate.gate) }),
        gate.method ? el("span", { className: "muted rp-small", text: ` (${gate.method})` }) : null,
      ]),
      el(
        "dl",
        { className: "rp-gate-figures" },
        entries.map(([term, value]) => el("div", {}, pair(term, value))),
      ),
      gate.reason ? el("p", { className: "rp-sub", text: gate.reason }) : null,
    ]);
  }

  function present(value) {
    return value !== null && value !== undefined;
  }

  function intervalText(interval) {
    if (!interval) return "—";
    const level = typeof interval.level === "number" ? ` at ${format.percent(interval.level, 0)}` : "";
    return `[${num(interval.low)}, ${num(interval.high)}]${level}`;
  }

  function srmLine(srm) {
    const verdict = srm.mismatch ? "fail" : "pass";
    const observed = (srm.observed || []).map(count).join(" / ");
    const expected = (srm.expected || []).map((x) => figure(Math.round(x * 10) / 10)).join(" / ");
    let text =
      ` Sample ratio check (${dash(srm.method)}): observed ${observed}, expected ${expected}, ` +
      `p = ${num(srm.p_value)}`;
    if (srm.e_value !== undefined) text += `, e = ${num(srm.e_value)}`;
    text += srm.mismatch
      ? `: the split is not what was configured (p ≤ ${num(srm.alpha)}).`
      : `: consistent with the configured split (fails at p ≤ ${num(srm.alpha)}).`;
    return el("p", { className: "rp-srm" }, [verdictBadge(verdict), text]);
  }

  // ---- an A/B test ----

  function experimentSteps(rollout) {
    const plan = Array.isArray(rollout.plan) ? rollout.plan : [];
    return plan
      .filter((step) => stepKind(step) === "experiment")
      .map((step) => step.experiment || {});
  }

  function experimentPanel(rollout) {
    const plan = experimentSteps(rollout)[0];
    const experiment = (rollout.status && rollout.status.experiment) || null;
    const decision = experiment && experiment.decision ? experiment.decision : null;
    const metric = (experiment && experiment.metric) || plan.metric;
    const parts = [
      el("p", {
        className: "muted",
        text:
          `On ${dash(metric)}: ${dash(plan.split)} % of traffic to the candidate, looking for an effect ` +
          `of ±${num(plan.mde)} at alpha ${num(plan.alpha)} with power ${num(plan.power)}.`,
      }),
    ];
    if (!experiment) {
      parts.push(el("p", { text: "The A/B test has not started yet." }));
      return panel("A/B test", parts, "rp-ab");
    }
    if (!decision) {
      parts.push(el("p", { text: "No data judged yet." }));
    } else {
      parts.push(decisionLine(decision));
      if (decision.interval && typeof plan.mde === "number") {
        const forest = {
          estimate: decision.estimate,
          low: decision.interval.low,
          high: decision.interval.high,
          level: decision.interval.level,
          mde: plan.mde,
          metric,
        };
        parts.push(el("div", { className: "rp-forest" }, [forestPlot(forest), forestText(forest)]));
      } else {
        const text = decision.reason ? `No interval yet: ${decision.reason}.` : "No interval yet.";
        parts.push(el("p", { className: "muted", text }));
      }
      parts.push(armSamples(rollout, experiment, decision));
      if (decision.srm) parts.push(srmLine(decision.srm));
      if (typeof decision.prob_candidate_better === "number") {
        parts.push(
          el("p", {
            text:
              "Bayesian chance that the candidate is better: " +
              `${chance(decision.prob_candidate_better)} ` +
              "(for information; the decision rests on the interval).",
          }),
        );
      }
    }
    if (experiment.horizon && shared.activePhases.has(rollout.phase)) {
      parts.push(el("p", { text: `To the planned size: ${horizonText(experiment.horizon)}.` }));
    }
    return panel("A/B test", parts, "rp-ab");
  }

  function decisionLine(decision) {
    const outcome = decision.outcome;
    const tone = OUTCOME_TONE[outcome] || "neutral";
    const line = el("p", { className: "rp-decision" }, [
      el("strong", { text: "Decision: " }),
      el("span", { className: `badge ${tone}`, text: words(outcome || "none") }),
      ` ${OUTCOME_WORDS[outcome] || ""}`,
    ]);
    const reason = [];
    if (decision.reason) reason.push(decision.reason);
    if (typeof decision.p_value === "number") reason.push(`always-valid p = ${num(decision.p_value)}`);
    const out = el("div", {}, [line]);
    if (reason.length) {
      out.append(el("p", { className: "rp-reason", text: `Reason: ${reason.join("; ")}` }));
    }
    return out;
  }

  function armSamples(rollout, experiment, decision) {
    const planned = typeof experiment.samples_per_arm === "number" ? experiment.samples_per_arm : null;
    const rows = [
      [`stable ${rollout.stable}`, decision.n_stable || 0],
      [`candidate ${rollout.candidate}`, decision.n_candidate || 0],
    ].map(([arm, n]) => {
      let text = count(n);
      let bar = null;
      if (planned) {
        text += ` of ${count(planned)} planned (${format.percent(Math.min(1, n / planned), 0)})`;
        // The bar repeats the text beside it, for the eye only.
        const attrs = { max: String(planned), value: String(Math.min(planned, n)), "aria-hidden": "true" };
        bar = el("progress", { attrs });
      }
      return el("li", {}, [el("span", { className: "rp-arm", text: arm }), bar, el("span", { text })]);
    });
    return el("div", {}, [
      el("h4", { text: "Samples per arm" }),
      el("ul", { className: "rp-arms" }, rows),
    ]);
  }

  // The effect (candidate − stable) with its interval, against the zone within ±mde
  // where any effect is smaller than the one the test looks for. Drawn by hand: one row.
  // The text is drawn at the size of the page's own small print once scaled to fit.
  function forestPlot(f) {
    const width = 420;
    const left = 12;
    const right = width - 12;
    const row = 58;
    const ends = [f.low, f.high, f.estimate].filter(finite).map(Math.abs);
    const reach = Math.max(f.mde, ...ends) * 1.15 || 1;
    const x = (value) => left + ((value + reach) / (2 * reach)) * (right - left);
    // An infinite end of the interval runs to the edge of the plot.
    const edge = (value) => {
      if (finite(value)) return x(Math.max(-reach, Math.min(reach, value)));
      return value === "-inf" || value === "-Infinity" ? left : right;
    };
    const svg = svgNode("svg", {
      viewBox: `0 0 ${width} 160`,
      role: "img",
      "aria-labelledby": "rp-forest-title rp-forest-desc",
      class: "rp-forest-plot",
    });
    svg.append(
      svgNode("title", { id: "rp-forest-title" }, "A/B test effect with its confidence interval"),
      svgNode("desc", { id: "rp-forest-desc" }, forestSentence(f)),
      // The zone of effects smaller than the one looked for, its edges, and zero.
      svgNode("rect", { x: x(-f.mde), y: 24, width: x(f.mde) - x(-f.mde), height: 68, class: "fp-zone" }),
      svgNode("line", { x1: x(-f.mde), x2: x(-f.mde), y1: 24, y2: 92, class: "fp-mde" }),
      svgNode("line", { x1: x(f.mde), x2: x(f.mde), y1: 24, y2: 92, class: "fp-mde" }),
      svgNode("line", { x1: x(0), x2: x(0), y1: 24, y2: 92, class: "fp-zero" }),
      svgText(x(-f.mde), 17, "fp-label", "end", `−mde ${figure(-f.mde)}`),
      svgText(x(f.mde), 17, "fp-label", "start", `+mde ${figure(f.mde)}`),
    );
    // The interval with its caps, and the estimate.
    const low = edge(f.low);
    const high = edge(f.high);
    svg.append(
      svgNode("line", { x1: low, x2: high, y1: row, y2: row, class: "fp-interval" }),
      svgNode("line", { x1: low, x2: low, y1: row - 9, y2: row + 9, class: "fp-interval" }),
      svgNode("line", { x1: high, x2: high, y1: row - 9, y2: row + 9, class: "fp-interval" }),
    );
    if (finite(f.estimate)) {
      const at = x(f.estimate);
      svg.append(
        svgNode("rect", {
          x: at - 6,
          y: row - 6,
          width: 12,
          height: 12,
          class: "fp-estimate",
          transform: `rotate(45 ${at} ${row})`,
        }),
      );
    }
    // The axis: the effect's scale, what it measures, and which side is better.
    svg.append(svgNode("line", { x1: left, x2: right, y1: 100, y2: 100, class: "fp-axis" }));
    for (const tick of [-reach, -reach / 2, 0, reach / 2, reach]) {
      const anchor = tick === -reach ? "start" : tick === reach ? "end" : "middle";
      svg.append(
        svgNode("line", { x1: x(tick), x2: x(tick), y1: 100, y2: 105, class: "fp-axis" }),
        svgText(x(tick), 119, "fp-tick", anchor, figure(Number(tick.toPrecision(2)))),
      );
    }
    const higher = HIGHER_IS_BETTER.has(f.metric);
    svg.append(
      svgText(width / 2, 137, "fp-axis-title", "middle", `effect on ${f.metric}: candidate − stable`),
      svgText(left, 155, "fp-side", "start", higher ? "← stable better" : "← candidate better"),
      svgText(right, 155, "fp-side", "end", higher ? "candidate better →" : "stable better →"),
    );
    return svg;
  }

  function svgNode(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function svgText(x, y, className, anchor, text) {
    return svgNode("text", { x, y, class: className, "text-anchor": anchor }, text);
  }

  function forestSentence(f) {
    const level = typeof f.level === "number" ? `${format.percent(f.level, 0)} ` : "";
    return (
      `Effect on ${f.metric} (candidate − stable): ${num(f.estimate)}, ${level}interval ` +
      `[${num(f.low)}, ${num(f.high)}]; the test looks for an effect of ±${figure(f.mde)}.`
    );
  }

  // The plot in words, beside it: what a screen reader and a reader of numbers get.
  function forestText(f) {
    const where = [];
    if (finite(f.low) && finite(f.high)) {
      if (f.low > 0 || f.high < 0) where.push("the interval excludes 0");
      else where.push("the interval includes 0");
      if (f.low > -f.mde && f.high < f.mde) where.push(`it lies within ±${figure(f.mde)}`);
      else where.push(`it reaches beyond ±${figure(f.mde)}`);
    }
    const level = typeof f.level === "number" ? ` (${format.percent(f.level, 0)})` : "";
    return figures([
      ["Effect (candidate − stable)", num(f.estimate)],
      [`Interval${level}`, `[${num(f.low)}, ${num(f.high)}]`],
      ["Smallest effect looked for", `±${figure(f.mde)}`],
      ["Reading", where.length ? where.join("; ") : "—"],
    ]);
  }

  // ---- starting a rollout from a YAML spec (operators only) ----

  function syncStarter(model, status) {
    const operator = shared.role() === "operator";
    show(starter, operator && status !== null);
    if (!operator || status === null) return;
    if (!form) form = buildStarter();
    if (form.model !== model) {
      form.model = model;
      form.textarea.value = drafts.has(model) ? drafts.get(model) : example(model, status);
      forgetPreview("");
    }
  }

  function leaveStarter() {
    if (!form) return;
    form.model = null;
    form.busy = false;
    forgetPreview("");
    form.outcome.textContent = "";
    form.outcome.className = "rp-outcome";
  }

  // A commented canary of this model's first version beside the stable one (a ready
  // one if there is). Names are written as double-quoted strings, which YAML reads
  // exactly as JSON writes them, whatever characters they hold.
  function example(model, status) {
    const versions = Array.isArray(status.versions) ? status.versions : [];
    const others = versions.filter((v) => v.name !== status.stable);
    const ready = others.find((v) => v.health === "ready");
    const candidate = (ready || others[0] || { name: "NAME-A-VERSION" }).name;
    const quote = (text) => JSON.stringify(String(text));
    return [
      `# A canary of ${model}: ${candidate} gets 10 %, then 30 %, then 50 % of the traffic,`,
      "# each held for pause_s and judged by the gates before the next; then 100 %.",
      "# Edit it, Preview it (a dry run: nothing changes), then Start rollout.",
      `model: ${quote(model)}`,
      `candidate: ${quote(candidate)}`,
      "strategy: canary",
      `description: ${quote(`canary of ${candidate}`)}`,
      "canary:",
      "  weights: [10, 30, 50]   # percent of traffic on the candidate, step by step",
      "  pause_s: 60             # seconds at each weight before its gates are judged",
      "gates:                    # judged at every tick; a failing gate rolls back",
      "  - {metric: error_rate, max_increase: 0.01}",
      "  - {metric: latency_p99_ms, max_ratio: 1.2}",
      "rollback:",
      "  on_inconclusive: rollback        # or pause, when the gates stay undecided",
      "  on_inconclusive_after_s: 900     # how long an analysis may stay undecided",
      "",
    ].join("\n");
  }

  function buildStarter() {
    const textarea = el("textarea", {
      className: "rp-yaml",
      attrs: {
        id: "rollout-yaml",
        rows: "18",
        spellcheck: "false",
        autocomplete: "off",
        autocapitalize: "off",
        "aria-describedby": "rollout-yaml-help",
      },
    });
    const previewButton = el("button", { text: "Preview", attrs: { type: "button" } });
    const startButton = el("button", {
      className: "primary",
      text: "Start rollout",
      attrs: { type: "button" },
    });
    const replace = el("input", { attrs: { type: "checkbox", id: "rollout-replace" } });
    // Built once and never redrawn by a poll, so a screen reader hears each outcome once.
    const outcome = el("p", {
      className: "rp-outcome",
      attrs: { role: "status", "aria-live": "polite" },
    });
    const result = el("div", { className: "rp-preview" });
    const stale = el("p", {
      className: "notice",
      text: "The spec changed since this preview: preview it again before starting.",
    });
    stale.hidden = true;
    const state = {
      model: null,
      previewed: null,
      busy: false,
      textarea,
      previewButton,
      startButton,
      replace,
      outcome,
      result,
      stale,
    };
    const formAttrs = { "aria-labelledby": "rollout-start-title", autocomplete: "off" };
    const node = el("form", { className: "panel rp-form", attrs: formAttrs }, [
      el("h3", { text: "Start a rollout from a YAML spec", attrs: { id: "rollout-start-title" } }),
      el("label", { text: "Rollout spec (YAML)", attrs: { for: "rollout-yaml" } }),
      el("p", {
        className: "muted rp-small",
        text:
          "The same spec as rollwise apply -f takes. Preview runs a dry run: the steps and how " +
          "long they may take at the current traffic. Start rollout is enabled once this very " +
          "text has been previewed.",
        attrs: { id: "rollout-yaml-help" },
      }),
      textarea,
      el("div", { className: "rp-replace" }, [
        replace,
        el("label", {
          text: "Replace the active rollout (it is aborted first)",
          attrs: { for: "rollout-replace" },
        }),
      ]),
      el("div", { className: "rp-buttons" }, [previewButton, startButton]),
      outcome,
      stale,
      result,
    ]);
    node.addEventListener("submit", (event) => event.preventDefault());
    textarea.addEventListener("input", () => {
      if (state.model !== null) drafts.set(state.model, textarea.value);
      updateButtons();
    });
    previewButton.addEventListener("click", () => runPreview());
    startButton.addEventListener("click", () => runStart());
    starter.replaceChildren(node);
    form = state;
    updateButtons();
    return state;
  }

  function previewCurrent() {
    return Boolean(form && form.previewed && form.previewed.text === form.textarea.value);
  }

  function updateButtons() {
    if (!form) return;
    form.previewButton.disabled = form.busy;
    form.startButton.disabled = form.busy || !previewCurrent();
    form.stale.hidden = !form.previewed || previewCurrent();
  }

  function forgetPreview(text) {
    if (!form) return;
    form.previewed = null;
    form.result.replaceChildren();
    if (text !== undefined) form.outcome.textContent = text;
    updateButtons();
  }

  function say(text, ok) {
    form.outcome.textContent = text;
    form.outcome.className = `rp-outcome ${ok ? "ok" : "bad"}`;
  }

  // The answer is the current person's and this model's: else it is dropped.
  function stillMine(mine, model) {
    return (
      mine === generation && form !== null && form.model === model && shared.role() === "operator"
    );
  }

  async function runPreview() {
    const text = form.textarea.value;
    const model = form.model;
    const mine = generation;
    if (!text.trim()) {
      forgetPreview();
      say("Write a spec first.", false);
      return;
    }
    form.busy = true;
    form.outcome.className = "rp-outcome";
    form.outcome.textContent = "Checking the spec…";
    updateButtons();
    try {
      const answer = await api("/api/v1/rollouts?dry_run=true", {
        method: "POST",
        body: { yaml: text },
      });
      if (!stillMine(mine, model)) return;
      form.previewed = { text };
      form.result.replaceChildren(previewView(answer));
      say(`Previewed at ${clock(new Date())}: nothing was started.`, true);
    } catch (error) {
      if (!stillMine(mine, model)) return;
      form.previewed = null;
      form.result.replaceChildren(refusal("The spec was refused", error));
      say(`Preview refused at ${clock(new Date())}; nothing was started.`, false);
    } finally {
      if (stillMine(mine, model)) {
        form.busy = false;
        updateButtons();
      }
    }
  }

  async function runStart() {
    const text = form.textarea.value;
    const model = form.model;
    const mine = generation;
    if (!previewCurrent()) return;
    const query = form.replace.checked ? "?replace=true" : "";
    form.busy = true;
    form.outcome.className = "rp-outcome";
    form.outcome.textContent = "Starting…";
    updateButtons();
    try {
      const started = await api(`/api/v1/rollouts${query}`, {
        method: "POST",
        body: { yaml: text },
      });
      if (!stillMine(mine, model)) return;
      const line =
        `Started rollout #${started.id} of ${started.model} at ${clock(new Date())}: ` +
        `${started.strategy} ${started.stable} → ${started.candidate}, ${started.phase}.`;
      // Started once: starting again needs a new preview (and would be refused anyway).
      forgetPreview();
      form.replace.checked = false;
      say(line, true);
      shared.announce(line);
      if (started.model !== model) {
        window.location.hash = pageLink("rollouts", started.model);
      } else {
        shared.refresh();
      }
    } catch (error) {
      if (!stillMine(mine, model)) return;
      form.result.replaceChildren(refusal("The rollout was not started", error));
      say(`Start refused at ${clock(new Date())}.`, false);
    } finally {
      if (stillMine(mine, model)) {
        form.busy = false;
        updateButtons();
      }
    }
  }

  // The API's refusal as it says it: a YAML error names its line, a spec error its key.
  function refusal(what, error) {
    return el("div", { className: "error rp-refusal", attrs: { role: "alert" } }, [
      el("strong", { text: `${what}: ` }),
      el("span", { className: "rp-refusal-text", text: error.message }),
    ]);
  }

  // ---- the dry run's answer ----

  function previewView(answer) {
    const plan = Array.isArray(answer.plan) ? answer.plan : [];
    const parts = [
      el("h4", { text: `Dry run: ${dash(answer.summary)}` }),
      el("p", {
        className: "muted",
        text:
          `Traffic over the last ${duration(answer.rate_window_s)}: ` +
          `${figure(answer.requests_per_s)} requests/s, ${figure(answer.labels_per_s)} labels/s. ` +
          "Expected times assume it stays so.",
      }),
      el("ol", { className: "rp-plan" }, plan.map(planItem)),
    ];
    if (answer.interface) parts.push(interfaceView(answer.interface));
    return el("section", { className: "rp-dry-run", attrs: { "aria-label": "Dry run" } }, parts);
  }

  function planItem(entry) {
    const item = el("li", {}, [el("span", { className: "rp-plan-text", text: dash(entry.text) })]);
    const notes = [];
    if (typeof entry.samples_per_arm === "number") {
      const time = finite(entry.expected_s)
        ? `about ${duration(entry.expected_s)} at the current traffic`
        : "no traffic measured to tell how long";
      notes.push(`plans ${count(entry.samples_per_arm)} samples per arm; ${time}`);
      if (entry.note) notes.push(entry.note);
    }
    if (Array.isArray(entry.gates)) {
      for (const gate of entry.gates) {
        const time = finite(gate.expected_s)
          ? `about ${duration(gate.expected_s)}`
          : "no rate to tell how long";
        notes.push(`${gate.gate}: ${count(gate.samples)} samples per arm to be judged, ${time}`);
      }
      const expected = finite(entry.expected_s) ? `about ${duration(entry.expected_s)}` : "unknown";
      notes.push(
        `expected time to judge: ${expected}; gives up after ${duration(entry.limit_s)} ` +
          `(${dash(entry.limit_key)}), then ${dash(entry.on_inconclusive)}`,
      );
    }
    if (notes.length) {
      item.append(el("ul", { className: "rp-plan-notes" }, notes.map((text) => el("li", { text }))));
    }
    if (entry.late) {
      item.append(
        el("p", {
          className: "notice",
          text:
            `Warning: at this traffic its gates cannot be judged before the time limit; it would ` +
            `${entry.on_inconclusive === "pause" ? "pause" : "roll back"} undecided.`,
        }),
      );
    }
    if (entry.preview_only) {
      const text = "Only preview requests reach the candidate here: no rate to expect.";
      item.append(el("p", { className: "notice", text }));
    }
    return item;
  }

  function interfaceView(diff) {
    const lines = Array.isArray(diff.text) ? diff.text : [];
    return el("div", { className: diff.breaking ? "error" : "notice" }, [
      el("strong", {
        text: diff.breaking
          ? `Interface differences that break callers of ${diff.stable}:`
          : `Interface differences between ${diff.stable} and ${diff.candidate}:`,
      }),
      el("ul", {}, lines.map((line) => el("li", { text: line }))),
    ]);
  }

  shared.registerPage({
    name: "rollout",
    tab: "models",
    section,
    errorLine,
    match,
    refresh,
    reset,
  });
})();
