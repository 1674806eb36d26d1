// Small progressive enhancements shared by every page.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});
// Confirm dangerous htmx actions the same way as plain forms.
document.addEventListener("htmx:confirm", (event) => {
  const message = event.detail.elt.getAttribute("data-confirm");
  if (!message) return;
  event.preventDefault();
  if (window.confirm(message)) event.detail.issueRequest(true);
});
// Success and info messages are about the moment they appeared: fade them out once read, so a page that keeps
// updating itself (a job's progress) does not keep saying "queued" after the job has finished.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".messages .msg-success, .messages .msg-info").forEach((message) => {
    setTimeout(() => {
      message.style.transition = "opacity .6s";
      message.style.opacity = "0";
      setTimeout(() => message.remove(), 700);
    }, 8000);
  });
});
// New-job form: the advanced numbers' placeholders and the augmentation switches follow the chosen task and preset
// (a transcription trains without noise or time shifts; a voice up to 200 epochs). A switch the user set stays set.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("job-form");
  const source = document.getElementById("task-defaults");
  if (!form || !source) return;
  const defaults = JSON.parse(source.textContent);
  const touched = new Set();
  const chosen = (name, fallback) => (form.querySelector(`input[name="${name}"]:checked`) || {}).value || fallback;
  form.addEventListener("change", (event) => {
    const input = event.target;
    if (input.type === "checkbox") touched.add(input.name);
    if (input.name !== "task" && input.name !== "preset") return;
    const values = (defaults[chosen("task", "classification")] || {})[chosen("preset", "balanced")] || {};
    let switched = false;
    for (const [name, value] of Object.entries(values)) {
      const field = form.elements[name];
      if (!field) continue;
      if (field.type !== "checkbox") field.placeholder = String(value);
      else if (!touched.has(name) && field.checked !== value) { field.checked = value; switched = true; }
    }
    // The summary asked for this change already; ask again with the switches as they now are.
    if (switched) form.dispatchEvent(new Event("change"));
  });
});
