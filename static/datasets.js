// Datasets panel: drag-and-drop upload with per-file progress, microphone recording, bulk selection.
// Everything here is an enhancement: without JavaScript the upload form posts normally.
(function () {
  "use strict";

  const BATCH_FILES = 20;               // audio files per upload request
  const BATCH_BYTES = 16 * 1024 * 1024; // and at most this many bytes (unless one file is larger)
  const PARALLEL_REQUESTS = 2;

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["x-csrftoken"] || "";
    } catch (error) {
      return "";
    }
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(0) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function problemMessage(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body.detail) return body.detail;
    } catch (error) { /* not JSON */ }
    if (xhr.status === 0) return "The connection failed. Check the server and try again.";
    return "The server answered " + xhr.status + " " + (xhr.statusText || "") + ".";
  }

  // ------------------------------------------------------------------------------------------ uploads

  function Uploader(form) {
    this.form = form;
    this.uploadUrl = form.dataset.uploadUrl;
    this.importUrl = form.dataset.importUrl;
    this.maxBytes = parseInt(form.dataset.maxBytes || "0", 10);
    this.card = form.closest(".upload-card");
    this.list = this.card.querySelector("[data-upload-list]");
    this.summary = this.card.querySelector("[data-upload-summary]");
    this.queue = [];
    this.running = 0;
    this.totals = { accepted: 0, rejected: 0, pending: 0 };
  }

  Uploader.prototype.metadata = function () {
    const value = (name) => (this.form.querySelector("[name=" + name + "]") || {}).value || "";
    const background = this.form.querySelector("[name=background]");
    return {
      label: value("label").trim(), transcript: value("transcript").trim(), speaker: value("speaker").trim(),
      score: value("score").trim(), source: value("source").trim(), background: background && background.checked ? "true" : "",
    };
  };

  Uploader.prototype.row = function (file, path) {
    const item = el("li", "upload-item is-waiting");
    const name = el("span", "upload-name", path || file.name);
    name.title = path || file.name;
    const size = el("span", "upload-size muted small", formatBytes(file.size));
    const bar = el("div", "progress");
    const fill = el("span");
    fill.style.width = "0%";
    bar.appendChild(fill);
    const status = el("span", "upload-status small", "Waiting");
    item.append(name, size, bar, status);
    this.list.prepend(item);
    return { item, fill, status };
  };

  // `files` holds File objects, or {file, path, label} for files found in dropped folders. `options.scope` is
  // where an error naming a field shows (the upload form by default, the recorder for recordings);
  // `options.onDone(accepted)` is told whether every file of the batch was added.
  Uploader.prototype.add = function (files, metadata, options) {
    metadata = metadata || this.metadata();
    options = options || {};
    const scope = options.scope || this.form;
    const onDone = options.onDone || null;
    this.clearFieldErrors();
    const audio = [];
    for (const given of files) {
      const entry = given instanceof File ? { file: given, path: given.name, label: null } : given;
      const file = entry.file;
      if (/\.zip$/i.test(file.name) || file.type === "application/zip" || file.type === "application/x-zip-compressed") {
        this.queue.push({ kind: "zip", files: [{ file, view: this.row(file, entry.path) }], metadata, scope, onDone });
        this.totals.pending += 1;
      } else if (!isHiddenPath(entry.path)) {
        audio.push({ file, label: entry.label, view: this.row(file, entry.path) });
        this.totals.pending += 1;
      }
    }
    let batch = [];
    let bytes = 0;
    for (const entry of audio) {
      if (batch.length && (batch.length >= BATCH_FILES || bytes + entry.file.size > BATCH_BYTES)) {
        this.queue.push({ kind: "files", files: batch, metadata, scope, onDone });
        batch = [];
        bytes = 0;
      }
      batch.push(entry);
      bytes += entry.file.size;
    }
    if (batch.length) this.queue.push({ kind: "files", files: batch, metadata, scope, onDone });
    this.showSummary();
    this.pump();
  };

  Uploader.prototype.pump = function () {
    while (this.running < PARALLEL_REQUESTS && this.queue.length) {
      const batch = this.queue.shift();
      this.running += 1;
      this.send(batch).finally(() => {
        this.running -= 1;
        if (batch.onDone) batch.onDone(batch.files.every((entry) => entry.view.item.classList.contains("is-accepted")));
        this.pump();
        if (!this.running && !this.queue.length) this.finished();
      });
    }
  };

  Uploader.prototype.send = function (batch) {
    return new Promise((resolve) => {
      const body = new FormData();
      let total = 0;
      const offsets = [];
      for (const entry of batch.files) {
        body.append(batch.kind === "zip" ? "file" : "files", entry.file, entry.view.item.querySelector(".upload-name").textContent);
        offsets.push([total, entry.file.size]);
        total += entry.file.size;
        entry.view.item.className = "upload-item is-uploading";
        entry.view.status.textContent = "Uploading";
      }
      const meta = batch.metadata;
      const ownLabels = batch.kind === "files" && batch.files.some((entry) => entry.label !== null && entry.label !== undefined);
      for (const key of Object.keys(meta)) {
        if (key === "label" && ownLabels) continue;
        if (key === "background" && batch.kind === "zip") continue; // a zip's manifest says which are backgrounds
        if (meta[key] !== "") body.append(key, meta[key]);
      }
      if (ownLabels) {
        // A folder's name labels the files in it; other files in the batch get the label field's value.
        for (const entry of batch.files) body.append("label", entry.label !== null && entry.label !== undefined ? entry.label : meta.label);
      }
      if (this.maxBytes && total > this.maxBytes) {
        this.fail(batch, "Larger than this server accepts (" + formatBytes(this.maxBytes) + " per request).");
        resolve();
        return;
      }
      const xhr = new XMLHttpRequest();
      xhr.open("POST", batch.kind === "zip" ? this.importUrl : this.uploadUrl);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (event) => {
        const loaded = event.lengthComputable ? event.loaded * (total / event.total) : event.loaded;
        batch.files.forEach((entry, index) => {
          const [start, size] = offsets[index];
          const share = size ? Math.min(Math.max((loaded - start) / size, 0), 1) : 1;
          entry.view.fill.style.width = (share * 100).toFixed(0) + "%";
          if (share >= 1) entry.view.status.textContent = batch.kind === "zip" ? "Importing…" : "Processing…";
          else if (share > 0) entry.view.status.textContent = (share * 100).toFixed(0) + "%";
        });
      });
      xhr.addEventListener("load", () => {
        let report;
        try { report = JSON.parse(xhr.responseText); } catch (error) { report = null; }
        if (xhr.status >= 200 && xhr.status < 300) {
          if (report) this.done(batch, report); else this.fail(batch, "Unexpected answer from the server.");
        } else if (xhr.status === 422 && report && Array.isArray(report.files) && (report.files.length || batch.kind === "zip")) {
          // Nothing was added: the problem carries the same per-file report.
          this.done(batch, report);
          if (batch.kind === "zip" && !report.files.length) batch.files[0].view.status.textContent = report.detail;
        } else {
          this.fail(batch, problemMessage(xhr));
          if (xhr.status === 422 && report && report.field) this.fieldError(batch.scope, report.field, report.detail);
        }
        resolve();
      });
      xhr.addEventListener("error", () => { this.fail(batch, problemMessage(xhr)); resolve(); });
      xhr.send(body);
    });
  };

  Uploader.prototype.result = function (view, result) {
    view.fill.style.width = "100%";
    view.item.className = "upload-item " + (result.status === "accepted" ? "is-accepted" : "is-rejected");
    view.status.textContent = "";
    if (result.status === "accepted") {
      const link = el("a", null, "Added as clip #" + result.clip_id);
      link.href = this.clipUrl(result.clip_id);
      view.status.append(link);
      this.totals.accepted += 1;
    } else {
      view.status.textContent = "Rejected: " + result.reason;
      if (result.duplicate_of) {
        const link = el("a", null, " (see #" + result.duplicate_of + ")");
        link.href = this.clipUrl(result.duplicate_of);
        view.status.append(link);
      }
      this.totals.rejected += 1;
    }
  };

  Uploader.prototype.clipUrl = function (id) {
    return window.location.pathname.replace(/\/$/, "") + "/clips/" + id + "/";
  };

  Uploader.prototype.done = function (batch, report) {
    if (batch.kind === "zip") {
      const entry = batch.files[0];
      this.totals.pending -= 1;
      entry.view.fill.style.width = "100%";
      entry.view.item.className = "upload-item " + (report.accepted ? "is-accepted" : "is-rejected");
      const skipped = report.skipped && report.skipped.length ? ", " + report.skipped.length + " non-audio skipped" : "";
      entry.view.status.textContent = "Archive: " + report.accepted + " added, " + report.rejected + " rejected" + skipped;
      const details = el("ul", "upload-sublist");
      for (const result of report.files) {
        const child = el("li", result.status === "accepted" ? "is-accepted" : "is-rejected");
        child.append(el("span", "upload-name", result.name));
        child.append(el("span", "upload-status small", result.status === "accepted" ? "Added as clip #" + result.clip_id : "Rejected: " + result.reason));
        details.append(child);
        if (result.status === "accepted") this.totals.accepted += 1; else this.totals.rejected += 1;
      }
      if (report.files.length) {
        const toggle = el("details", "upload-details");
        toggle.append(el("summary", "small", "Show every file"), details);
        entry.view.item.append(toggle);
      }
    } else {
      batch.files.forEach((entry, index) => {
        this.totals.pending -= 1;
        const result = report.files[index] || { status: "rejected", reason: "no answer for this file" };
        this.result(entry.view, result);
      });
    }
    this.showSummary();
  };

  // A 422 that names one of the form's fields (an invalid source) is shown under that field as well: the upload
  // form's, or the recorder's for a recording.
  Uploader.prototype.fieldError = function (scope, name, message) {
    const input = scope.querySelector("[name=" + name + "]");
    const field = scope.querySelector(".field[data-field=" + name + "]") || (input && input.closest(".field"));
    if (!field) return;
    field.classList.add("has-error");
    let error = field.querySelector("[data-upload-error]");
    if (!error) {
      error = el("div", "field-error", "");
      error.setAttribute("data-upload-error", "");
      field.append(error);
    }
    error.textContent = message.indexOf(name + ": ") === 0 ? message.slice(name.length + 2) : message;
  };

  Uploader.prototype.clearFieldErrors = function () {
    for (const error of this.card.querySelectorAll("[data-upload-error]")) {
      error.closest(".field").classList.remove("has-error");
      error.remove();
    }
  };

  Uploader.prototype.fail = function (batch, message) {
    for (const entry of batch.files) {
      this.totals.pending -= 1;
      this.totals.rejected += 1;
      entry.view.fill.style.width = "100%";
      entry.view.item.className = "upload-item is-rejected";
      entry.view.status.textContent = message;
    }
    this.showSummary();
  };

  Uploader.prototype.showSummary = function () {
    const t = this.totals;
    this.summary.hidden = false;
    this.summary.textContent = (t.pending ? t.pending + " in progress · " : "") + t.accepted + " added · " + t.rejected + " rejected";
  };

  Uploader.prototype.finished = function () {
    const table = document.getElementById("clip-table");
    if (table && window.htmx && this.totals.accepted) {
      window.htmx.ajax("GET", window.location.pathname + window.location.search, { target: "#clip-table", swap: "outerHTML" });
      window.htmx.trigger(document.body, "clips-changed");
    }
  };

  // What an import skips, as the server decides it (datasets_app.importing.skipped_file_rule, in the page).
  function skippedFileRule() {
    const node = document.getElementById("skipped-file-rule");
    try {
      return node ? JSON.parse(node.textContent) : null;
    } catch (error) {
      return null;
    }
  }
  const SKIPPED = skippedFileRule() || { suffixes: [], stems: [], hidden_names: [] };

  function isHiddenPath(path) {
    const parts = path.split("/").filter((part) => part);
    return parts.some((part) => part.startsWith(".") || part === "__MACOSX")
      || (parts.length > 0 && SKIPPED.hidden_names.includes(parts[parts.length - 1].toLowerCase()));
  }

  // Text and images that travel with audio folders (README, notes, spectrogram pictures) are not sent.
  function isDocument(path) {
    const name = path.split("/").pop();
    const dot = name.lastIndexOf(".");
    const hasSuffix = dot > 0 && dot < name.length - 1;
    const suffix = hasSuffix ? name.slice(dot).toLowerCase() : "";
    const stem = hasSuffix ? name.slice(0, dot) : name;
    return SKIPPED.suffixes.includes(suffix) || SKIPPED.stems.includes(stem.toUpperCase());
  }

  // Dropped folders: every file inside, labelled with the folder that holds it (as in a zip with a folder
  // per label). A dropped folder of files labels them with its own name; its subfolders label theirs.
  function readEntries(reader) {
    return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
  }

  async function filesFromEntry(entry, parents, found) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      const path = parents.concat(file.name).join("/");
      if (!isDocument(path)) found.push({ file, path, label: parents.length ? parents[parents.length - 1] : null });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      let batch;
      do {
        batch = await readEntries(reader);
        for (const child of batch) await filesFromEntry(child, parents.concat(entry.name), found);
      } while (batch.length);
    }
  }

  async function droppedFiles(dataTransfer) {
    const items = Array.from(dataTransfer.items || []);
    const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
    if (!entries.some((entry) => entry && entry.isDirectory)) return Array.from(dataTransfer.files || []);
    const found = [];
    for (const entry of entries) if (entry) await filesFromEntry(entry, [], found);
    return found;
  }

  function setUpUploads() {
    const form = document.getElementById("upload-form");
    if (!form || !window.FormData || !window.XMLHttpRequest) return;
    const uploader = new Uploader(form);
    const dropzone = form.querySelector("[data-dropzone]");
    const input = form.querySelector("input[type=file]");
    const submit = form.querySelector("[data-nojs-submit]");
    if (submit) submit.hidden = true;
    input.addEventListener("change", () => {
      if (input.files.length) uploader.add(Array.from(input.files));
      input.value = "";
    });
    ["dragenter", "dragover"].forEach((type) => dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("is-dragging");
    }));
    ["dragleave", "dragend"].forEach((type) => dropzone.addEventListener(type, () => dropzone.classList.remove("is-dragging")));
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      dropzone.classList.remove("is-dragging");
      droppedFiles(event.dataTransfer).then((files) => {
        if (files.length) uploader.add(files);
      });
    });
    // Dropping next to the zone should not navigate away from the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
    form.addEventListener("submit", (event) => event.preventDefault());
    setUpRecorder(uploader);
  }

  // ---------------------------------------------------------------------------------------- recording

  function recorderMimeType() {
    const candidates = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];
    for (const type of candidates) {
      if (window.MediaRecorder && MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(type)) return type;
    }
    return "";
  }

  function extensionFor(type) {
    if (type.indexOf("webm") >= 0) return "webm";
    if (type.indexOf("ogg") >= 0) return "ogg";
    if (type.indexOf("mp4") >= 0) return "m4a";
    return "webm";
  }

  function setUpRecorder(uploader) {
    const box = document.querySelector("[data-recorder]");
    if (!box || !window.MediaRecorder || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
    box.hidden = false;
    const toggle = box.querySelector("[data-rec-toggle]");
    const toggleLabel = box.querySelector("[data-rec-label]");
    const time = box.querySelector("[data-rec-time]");
    const meter = box.querySelector("[data-rec-meter]");
    const preview = box.querySelector("[data-rec-preview]");
    const audio = box.querySelector("[data-rec-audio]");
    const error = box.querySelector("[data-rec-error]");
    let recorder = null, stream = null, chunks = [], started = 0, timer = null, blob = null, analyser = null, context = null;

    function showError(message) {
      error.textContent = message;
      error.hidden = !message;
    }

    function tick() {
      const seconds = Math.floor((Date.now() - started) / 1000);
      time.textContent = Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
      if (analyser) {
        const data = new Uint8Array(analyser.fftSize);
        analyser.getByteTimeDomainData(data);
        let peak = 0;
        for (const value of data) peak = Math.max(peak, Math.abs(value - 128) / 128);
        meter.style.width = Math.min(100, peak * 100).toFixed(0) + "%";
      }
    }

    async function start() {
      showError("");
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
      } catch (reason) {
        showError("The microphone is not available: " + (reason && reason.message ? reason.message : reason) + ". Allow microphone access for this site (and use https or localhost).");
        return;
      }
      const type = recorderMimeType();
      recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
      chunks = [];
      recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
      recorder.addEventListener("stop", () => {
        blob = new Blob(chunks, { type: recorder.mimeType || type || "audio/webm" });
        audio.src = URL.createObjectURL(blob);
        preview.hidden = false;
        stream.getTracks().forEach((track) => track.stop());
        if (context) context.close();
        analyser = null;
        meter.style.width = "0%";
      });
      try {
        context = new (window.AudioContext || window.webkitAudioContext)();
        analyser = context.createAnalyser();
        analyser.fftSize = 1024;
        context.createMediaStreamSource(stream).connect(analyser);
      } catch (ignored) { analyser = null; }
      recorder.start();
      started = Date.now();
      timer = setInterval(tick, 100);
      box.classList.add("is-recording");
      toggleLabel.textContent = "Stop";
      preview.hidden = true;
    }

    function stop() {
      if (recorder && recorder.state !== "inactive") recorder.stop();
      clearInterval(timer);
      box.classList.remove("is-recording");
      toggleLabel.textContent = "Record again";
    }

    toggle.addEventListener("click", () => {
      if (recorder && recorder.state === "recording") stop(); else start();
    });
    box.querySelector("[data-rec-discard]").addEventListener("click", () => {
      blob = null;
      preview.hidden = true;
      audio.removeAttribute("src");
      toggleLabel.textContent = "Start recording";
      time.textContent = "0:00";
    });
    // The recording is kept until the server has added it: after a refusal (an invalid source, say) the user
    // corrects the field and saves the same recording again, or discards it.
    const save = box.querySelector("[data-rec-save]");
    save.addEventListener("click", () => {
      if (!blob) return;
      const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
      const file = new File([blob], "recording-" + stamp + "." + extensionFor(blob.type), { type: blob.type });
      const value = (id) => box.querySelector(id).value.trim();
      const saved = blob;
      save.disabled = true;
      save.textContent = "Saving…";
      toggle.disabled = true;
      uploader.add([file], {
        label: value("#rec-label"), transcript: value("#rec-transcript"), speaker: value("#rec-speaker"), score: "",
        source: value("#rec-source"),
      }, {
        scope: box,
        onDone: (accepted) => {
          save.disabled = false;
          save.textContent = "Save to dataset";
          toggle.disabled = false;
          if (!accepted || blob !== saved) return;
          blob = null;
          preview.hidden = true;
          audio.removeAttribute("src");
          toggleLabel.textContent = "Start recording";
          time.textContent = "0:00";
          box.querySelector("#rec-transcript").value = "";
        },
      });
    });
  }

  // ------------------------------------------------------------------------------- bulk selection

  function updateSelection() {
    const form = document.getElementById("bulk-form");
    if (!form) return;
    const boxes = Array.from(document.querySelectorAll('input[name=ids][form="bulk-form"]'));
    const chosen = boxes.filter((box) => box.checked).length;
    const counter = form.querySelector("[data-selected-count]");
    if (counter) counter.textContent = chosen + " selected";
    form.querySelectorAll("[data-needs-selection]").forEach((button) => { button.disabled = chosen === 0; });
    const all = form.querySelector("[data-select-all]");
    if (all) {
      all.checked = boxes.length > 0 && chosen === boxes.length;
      all.indeterminate = chosen > 0 && chosen < boxes.length;
    }
    document.querySelectorAll("[data-export-link]").forEach((link) => {
      const url = new URL(link.href, window.location.href);
      const params = new URLSearchParams(window.location.search);
      params.delete("page");
      params.set("layout", link.dataset.layout);
      url.search = params.toString();
      link.href = url.toString();
    });
  }

  document.addEventListener("change", (event) => {
    if (event.target.matches("[data-select-all]")) {
      document.querySelectorAll('input[name=ids][form="bulk-form"]').forEach((box) => { box.checked = event.target.checked; });
    }
    if (event.target.matches('input[name=ids], [data-select-all]')) updateSelection();
  });
  document.addEventListener("htmx:afterSettle", updateSelection);

  // Plain forms that need a confirmation (htmx ones use app.js's htmx:confirm handler).
  document.addEventListener("submit", (event) => {
    const message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Links that open a <details> panel further down (e.g. "New dataset").
  document.addEventListener("click", (event) => {
    const link = event.target.closest("[data-open-details]");
    if (!link) return;
    const details = document.getElementById(link.dataset.openDetails);
    if (details) {
      details.open = true;
      const first = details.querySelector("input, textarea, select");
      if (first) setTimeout(() => first.focus(), 0);
    }
  });

  // Inline edits: Enter in a one-line field saves; Escape puts the saved value back.
  document.addEventListener("keydown", (event) => {
    const field = event.target;
    if (!field.closest || !field.closest(".inline-edit")) return;
    if (event.key === "Escape") {
      field.value = field.defaultValue;
      field.blur();
    } else if (event.key === "Enter" && field.tagName === "TEXTAREA" && !event.shiftKey) {
      event.preventDefault();
      field.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });

  // Textareas in the table grow with their content.
  function grow(area) {
    area.style.height = "auto";
    area.style.height = Math.min(area.scrollHeight + 2, 160) + "px";
  }
  document.addEventListener("input", (event) => { if (event.target.matches(".inline-edit textarea")) grow(event.target); });
  function growAll(root) { (root || document).querySelectorAll(".inline-edit textarea").forEach(grow); }
  document.addEventListener("htmx:afterSettle", (event) => growAll(event.target));

  document.addEventListener("DOMContentLoaded", () => {
    setUpUploads();
    updateSelection();
    growAll();
  });
})();
