// The recognizer's web page: plain JavaScript against the JSON API, no build step.
// User-supplied text (identity names, file names) is only ever set through textContent,
// never innerHTML, so a name cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
let queryFile = null;

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.message) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function thumbnail(url, alt) {
  const img = element("img");
  if (url) img.src = url;
  img.alt = alt;
  return img;
}

async function refreshHealth() {
  try {
    const h = await api("/health");
    const threshold = h.identification_threshold === null ? "none" : h.identification_threshold.toFixed(4);
    $("health").textContent =
      `${h.model} · ${h.embedding_dim}-d ${h.metric} · threshold ${threshold} · ` +
      `${h.identities} identities, ${h.images} images · writes ${h.writes_enabled ? "enabled" : "disabled"}`;
  } catch (error) {
    $("health").textContent = `server not reachable: ${error.message}`;
  }
}

async function refreshIdentities() {
  const list = $("identities");
  const { identities } = await api("/identities");
  list.replaceChildren();
  for (const item of identities) {
    const li = element("li");
    li.dataset.identity = item.identity;
    li.append(thumbnail(item.thumbnail_url, item.identity),
              element("span", item.identity, "name"),
              element("span", `(${item.images})`, "muted"));
    const remove = element("button", "remove");
    remove.type = "button";
    remove.addEventListener("click", () => removeIdentity(item.identity));
    li.append(remove);
    list.append(li);
  }
  $("identity-count").textContent = `(${identities.length})`;
}

function showResults(result) {
  const decision = $("decision");
  decision.textContent = result.identity === "unknown"
    ? "unknown"
    : `${result.identity} (distance ${result.distance.toFixed(4)})`;
  decision.dataset.identity = result.identity;
  const list = $("results");
  list.replaceChildren();
  for (const match of result.matches) {
    const li = element("li", undefined, match.within_threshold === false ? "match far" : "match");
    li.dataset.identity = match.identity;
    li.append(thumbnail(match.thumbnail_url, match.identity),
              element("span", match.identity, "name"),
              element("span", `distance ${match.distance.toFixed(4)}`, "distance"));
    if (match.within_threshold === false) li.append(element("span", "beyond the threshold", "muted"));
    list.append(li);
  }
  if (!result.matches.length) list.append(element("li", "the gallery is empty", "muted"));
}

async function identify(file) {
  queryFile = file;
  $("identify-error").textContent = "";
  $("query").hidden = false;
  $("query-preview").src = URL.createObjectURL(file);
  $("decision").textContent = "…";
  const form = new FormData();
  form.append("files", file, file.name);
  form.append("top_k", "5");
  try {
    const body = await api("/identify", { method: "POST", body: form });
    showResults(body.results[0]);
  } catch (error) {
    $("decision").textContent = "";
    $("results").replaceChildren();
    $("identify-error").textContent = error.message;
  }
}

function authHeaders() {
  const token = $("token").value.trim();
  sessionStorage.setItem("tripletlab-token", token);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function enrol(event) {
  event.preventDefault();
  const status = $("enrol-status");
  const files = Array.from($("enrol-files").files);
  if ($("enrol-use-query").checked && queryFile) files.push(queryFile);
  if (!files.length) { status.textContent = "choose at least one image"; return; }
  const form = new FormData();
  form.append("identity", $("enrol-name").value);
  for (const file of files) form.append("files", file, file.name);
  status.textContent = "enrolling…";
  try {
    const body = await api("/identities", { method: "POST", body: form, headers: authHeaders() });
    status.textContent = `enrolled ${body.identity} (${body.image_ids.length} image(s))`;
    $("enrol-form").reset();
    $("token").value = sessionStorage.getItem("tripletlab-token") || "";
    await Promise.all([refreshIdentities(), refreshHealth()]);
  } catch (error) {
    status.textContent = `not enrolled: ${error.message}`;
  }
}

async function removeIdentity(identity) {
  const status = $("enrol-status");
  try {
    await api(`/identities/${encodeURIComponent(identity)}`, { method: "DELETE", headers: authHeaders() });
    status.textContent = `removed ${identity}`;
    await Promise.all([refreshIdentities(), refreshHealth()]);
  } catch (error) {
    status.textContent = `not removed: ${error.message}`;
  }
}

function setUpDropZone() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) identify(e.dataTransfer.files[0]);
  });
  $("query-file").addEventListener("change", (e) => {
    if (e.target.files.length) identify(e.target.files[0]);
    e.target.value = "";  // so that choosing the same file again asks again
  });
}

setUpDropZone();
$("enrol-form").addEventListener("submit", enrol);
$("token").value = sessionStorage.getItem("tripletlab-token") || "";
refreshHealth();
refreshIdentities().catch((error) => { $("identity-count").textContent = error.message; });
