// The notebook camera (fer_lib.widget.camera_widget): the browser's camera, a snapshot sent to the kernel.
// The picture stays in this browser until "Take snapshot"; then one JPEG goes to the kernel that runs the notebook
// (on Colab: Google's machine), which finds the faces and answers below the camera. Nothing is stored.

function button(label, title) {
  const b = document.createElement("button");
  b.className = "jupyter-button widget-button fer-camera-button";
  b.textContent = label;
  b.title = title;
  return b;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "fer-camera";
  const bar = document.createElement("div");
  bar.className = "fer-camera-bar";
  const start = button("Start camera", "ask the browser for the camera");
  const snap = button("Take snapshot", "send one picture to the kernel");
  const stop = button("Stop camera", "release the camera");
  snap.disabled = true;
  stop.disabled = true;
  bar.append(start, snap, stop);
  const video = document.createElement("video");
  video.className = "fer-camera-video";
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  const note = document.createElement("div");
  note.className = "fer-camera-note";
  note.textContent = "The camera is off.";
  root.append(bar, video, note);
  el.appendChild(root);
  let stream = null;

  function release() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    snap.disabled = true;
    stop.disabled = true;
    start.disabled = false;
  }

  start.addEventListener("click", async () => {
    start.disabled = true;
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new Error("this page has no camera access (it must be served from https:// or localhost)");
      }
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
      video.srcObject = stream;
      await video.play();
      snap.disabled = false;
      stop.disabled = false;
      note.textContent = "Camera on: the picture stays in this browser until you take a snapshot.";
    } catch (err) {
      release();
      const text = `camera not available: ${err.name || "Error"}: ${err.message}`;
      note.textContent = text + ". Allow the camera for this page, or upload a photo instead.";
      model.set("error", text);
      model.save_changes();
    }
  });

  snap.addEventListener("click", () => {
    if (!video.videoWidth) {
      note.textContent = "The camera has not given a picture yet; wait a moment and try again.";
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const jpeg = canvas.toDataURL("image/jpeg", 0.92).split(",")[1];
    model.set("snapshot", jpeg);
    model.set("count", model.get("count") + 1);
    model.save_changes();
    note.textContent = "Snapshot sent to the kernel; the answer appears below.";
  });

  stop.addEventListener("click", () => {
    release();
    note.textContent = "The camera is off.";
  });

  return () => release();  // the cell's output cleared or the notebook closed: the camera is released
}

export default { render };
