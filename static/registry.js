// "Try it" on the model pages: record a clip in the browser with MediaRecorder, put it in the form's file
// input, and submit it like an uploaded file (the server decodes WebM/Opus, Ogg and WAV alike).
(() => {
  const MAX_SECONDS = 10;

  function setup(form) {
    if (form.dataset.recorderReady) return;
    form.dataset.recorderReady = "1";
    const button = form.querySelector("[data-record]");
    const label = form.querySelector("[data-record-label]");
    const status = form.querySelector("[data-record-status]");
    const input = form.querySelector("[data-try-file]");
    const preview = form.querySelector("[data-record-preview]");
    if (!button || !input) return;
    if (!window.MediaRecorder || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      status.textContent = window.isSecureContext ? "This browser cannot record audio; upload a file instead."
        : "Recording needs HTTPS (or localhost); upload a file instead.";
      return;
    }
    button.hidden = false;
    let recorder = null;
    let timer = null;

    async function start() {
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (error) {
        status.textContent = "Microphone not available: " + error.message;
        return;
      }
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
      recorder.addEventListener("stop", () => {
        stream.getTracks().forEach((track) => track.stop());
        clearInterval(timer);
        button.classList.remove("recording");
        label.textContent = "Record again";
        const type = recorder.mimeType || "audio/webm";
        const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
        const file = new File(chunks, `recording.${extension}`, { type });
        const transfer = new DataTransfer();
        transfer.items.add(file);
        input.files = transfer.files;
        preview.src = URL.createObjectURL(file);
        preview.hidden = false;
        status.textContent = `Recorded ${(file.size / 1024).toFixed(0)} KB; scoring…`;
        form.requestSubmit();
      });
      recorder.start();
      const started = Date.now();
      button.classList.add("recording");
      label.textContent = "Stop";
      status.textContent = "Recording… 0 s";
      timer = setInterval(() => {
        const seconds = Math.floor((Date.now() - started) / 1000);
        status.textContent = `Recording… ${seconds} s (stops at ${MAX_SECONDS} s)`;
        if (seconds >= MAX_SECONDS) recorder.stop();
      }, 250);
    }

    button.addEventListener("click", () => {
      if (recorder && recorder.state === "recording") recorder.stop();
      else start();
    });
    form.addEventListener("htmx:afterRequest", () => {
      status.textContent = status.textContent.replace("; scoring…", "");
    });
    input.addEventListener("change", () => {
      if (input.files.length && input.files[0].name.startsWith("recording.")) return;
      preview.hidden = true;
      status.textContent = "";
    });
  }

  function init() { document.querySelectorAll(".try-form").forEach(setup); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
