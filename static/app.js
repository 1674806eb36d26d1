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
