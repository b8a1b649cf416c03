// Nex's upload panel: drag-and-drop of files and folders onto a listing, uploaded with the
// resumable-upload protocol (draft-ietf-httpbis-resumable-upload), with progress, cancel and
// automatic resumption; and New folder, Rename and Delete where the server allows them.
// The listing's plain form (form.upload) keeps working without this script.
"use strict";
(function () {
  const form = document.querySelector("form.upload");
  if (!form || !window.XMLHttpRequest) return;
  const CHUNK = 8 * 1024 * 1024;          // bytes per PATCH: a lost connection costs at most this
  const RETRY_MAX = 30000;                // longest pause between attempts to resume, ms
  const folder = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const flags = document.currentScript ? document.currentScript.dataset : {};
  const can = {mkcol: flags.mkcol === "1", rename: flags.rename === "1",
               remove: flags.delete === "1"};

  // --- the panel ---------------------------------------------------------------------------
  const panel = document.createElement("section");
  panel.className = "nex-uploads";
  panel.innerHTML =
    '<p class="drop">Drop files or folders here, or ' +
    '<button type="button" class="pick-files">choose files</button> ' +
    '<button type="button" class="pick-folder">choose a folder</button>' +
    (can.mkcol ? ' <button type="button" class="new-folder">New folder</button>' : "") +
    '</p><div class="total" hidden><progress max="1" value="0"></progress> ' +
    '<span class="total-text"></span></div><ul class="files"></ul>' +
    '<input type="file" class="files-input" multiple hidden>' +
    '<input type="file" class="folder-input" webkitdirectory multiple hidden>';
  form.after(panel);
  const style = document.createElement("style");
  style.textContent =
    ".nex-uploads{margin-top:1rem;padding:.7rem .8rem;border:2px dashed var(--line,#ccc);" +
    "border-radius:4px}.nex-uploads.dragging{border-color:var(--accent,#36c)}" +
    ".nex-uploads ul{list-style:none;padding:0;margin:.5rem 0 0}.nex-uploads li{margin:.2rem 0}" +
    ".nex-uploads li[data-state=failed] .status{color:#c00}.nex-uploads progress{width:12rem}" +
    "button.file-action{font-size:.75rem;margin-left:.4rem}";
  document.head.append(style);
  const list = panel.querySelector("ul.files");
  const totalBox = panel.querySelector(".total");
  const totalBar = totalBox.querySelector("progress");
  const totalText = totalBox.querySelector(".total-text");
  const filesInput = panel.querySelector(".files-input");
  const folderInput = panel.querySelector(".folder-input");
  panel.querySelector(".pick-files").onclick = () => filesInput.click();
  panel.querySelector(".pick-folder").onclick = () => folderInput.click();
  filesInput.onchange = () => { enqueue(picked(filesInput.files)); filesInput.value = ""; };
  folderInput.onchange = () => { enqueue(picked(folderInput.files)); folderInput.value = ""; };

  document.addEventListener("dragover", (event) => {
    if (event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files")) {
      event.preventDefault();
      panel.classList.add("dragging");
    }
  });
  document.addEventListener("dragleave", () => panel.classList.remove("dragging"));
  document.addEventListener("drop", (event) => {
    if (!event.dataTransfer) return;
    event.preventDefault();
    panel.classList.remove("dragging");
    dropped(event.dataTransfer).then(enqueue);
  });

  // --- what to upload: [{file, path}] with path relative to this folder --------------------
  function picked(files) {
    return Array.from(files).map((file) => ({file, path: file.webkitRelativePath || file.name}));
  }

  async function dropped(transfer) {
    const items = Array.from(transfer.items || []).filter((item) => item.kind === "file");
    const entries = items.map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry());
    if (!entries.length || entries.some((entry) => !entry)) return picked(transfer.files);
    const found = [];
    for (const entry of entries) await walk(entry, "", found);
    return found;
  }

  function walk(entry, prefix, found) {
    if (entry.isFile) {
      return new Promise((done) => entry.file((file) => {
        found.push({file, path: prefix + entry.name});
        done();
      }, () => done()));
    }
    const reader = entry.createReader();
    const readAll = () => new Promise((done) => reader.readEntries(done, () => done([])));
    return (async () => {
      found.push({folder: true, path: prefix + entry.name});
      for (let batch = await readAll(); batch.length; batch = await readAll()) {
        for (const child of batch) await walk(child, prefix + entry.name + "/", found);
      }
    })();
  }

  // --- the queue ---------------------------------------------------------------------------
  const uploads = [];
  let running = false;

  function enqueue(items) {
    const folders = new Set();
    for (const item of items) {
      const parts = item.path.split("/");
      for (let i = 1; i < parts.length; i++) folders.add(parts.slice(0, i).join("/"));
      if (item.folder) folders.add(item.path);
    }
    for (const path of Array.from(folders).sort()) uploads.push(new Upload(null, path));
    for (const item of items) if (!item.folder) uploads.push(new Upload(item.file, item.path));
    totalBox.hidden = false;
    update();
    if (!running) run();
  }

  async function run() {
    running = true;
    for (let next; (next = uploads.find((upload) => upload.state === "waiting"));) {
      await next.start();
      update();
    }
    running = false;
    if (uploads.length && uploads.every((upload) => upload.state !== "failed")) {
      setTimeout(() => { if (!running) location.reload(); }, 1500);
    }
  }

  function url(path) {
    return folder + path.split("/").map(encodeURIComponent).join("/");
  }

  function sizeText(bytes) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let unit = 0;
    for (; bytes >= 1024 && unit < units.length - 1; unit++) bytes /= 1024;
    return (unit ? bytes.toFixed(1) : String(bytes)) + " " + units[unit];
  }

  const started = Date.now();
  function update() {
    const files = uploads.filter((upload) => upload.file);
    const size = files.reduce((sum, upload) => sum + upload.file.size, 0);
    const done = files.reduce((sum, upload) => sum + upload.sent, 0);
    totalBar.max = size || 1;
    totalBar.value = done;
    const seconds = Math.max((Date.now() - started) / 1000, 0.001);
    const speed = done / seconds;
    const left = speed > 0 ? Math.ceil((size - done) / speed) : 0;
    const finished = files.filter((upload) => upload.state === "done").length;
    totalText.textContent = `${finished} of ${files.length} files, ${sizeText(done)} of ` +
      `${sizeText(size)}, ${sizeText(Math.round(speed))}/s, ${left} s left`;
  }

  // --- one upload: a folder (MKCOL) or a file (resumable) ----------------------------------
  class Upload {
    constructor(file, path) {
      this.file = file;
      this.path = path;
      this.sent = 0;
      this.state = "waiting";
      this.row = document.createElement("li");
      this.row.innerHTML = '<span class="name"></span> <progress max="1" value="0"></progress>' +
        ' <span class="status"></span> <button type="button" class="cancel">Cancel</button>';
      this.row.querySelector(".name").textContent = path + (file ? "" : "/");
      this.bar = this.row.querySelector("progress");
      this.status = this.row.querySelector(".status");
      this.cancelButton = this.row.querySelector(".cancel");
      this.cancelButton.onclick = () => this.cancel();
      if (!file) this.bar.hidden = true;
      list.append(this.row);
    }

    say(state, text) {
      this.state = state;
      this.row.dataset.state = state;
      this.status.textContent = text;
      if (["done", "failed", "cancelled", "skipped"].includes(state)) {
        this.cancelButton.hidden = true;
      }
    }

    progress(sent) {
      this.sent = sent;
      if (this.file) {
        this.bar.max = this.file.size || 1;
        this.bar.value = sent;
      }
      update();
    }

    async start() {
      this.say("sending", "…");
      try {
        if (!this.file) await this.makeFolder();
        else await this.send();
      } catch (error) {
        if (this.state === "sending") this.say("failed", String(error.message || error));
      }
    }

    // Send until the server answers: while it cannot be reached or fails (0, 5xx), wait
    // longer each time and try again.
    async patiently(send) {
      for (let pause = 1000; ; pause = Math.min(pause * 2, RETRY_MAX)) {
        const answer = await send();
        if (this.state !== "sending" || (answer.status !== 0 && answer.status < 500)) {
          this.status.textContent = this.state === "sending" ? "…" : this.status.textContent;
          return answer;
        }
        this.status.textContent = "connection lost, retrying…";
        await sleep(pause);
      }
    }

    async makeFolder() {
      const answer = await this.patiently(() => request("MKCOL", url(this.path)));
      // 405: it exists already, which is what we want.
      if (answer.status === 201 || answer.status === 405) this.say("done", "folder ready");
      else throw new Error(`${answer.status} ${answer.statusText}`);
    }

    key() {
      return `nex-upload:${folder}${this.path}:${this.file.size}:${this.file.lastModified}`;
    }

    async send() {
      this.resource = localStorage.getItem(this.key());
      let offset = this.resource ? await this.offset() : null;
      if (offset === null) offset = await this.create();
      if (offset === null) return;
      let pause = 1000;
      while (this.state === "sending") {
        const end = Math.min(offset + CHUNK, this.file.size);
        const answer = await request("PATCH", this.resource, {
          "Content-Type": "application/partial-upload", "Upload-Offset": String(offset),
          "Upload-Complete": end === this.file.size ? "?1" : "?0",
        }, this.file.slice(offset, end), (loaded) => this.progress(offset + loaded), this);
        if (this.state !== "sending") return;
        if (answer.status === 201 || answer.status === 204 && end === this.file.size) {
          localStorage.removeItem(this.key());
          this.progress(this.file.size);
          this.say("done", answer.status === 201 ? "uploaded" : "replaced");
          return;
        }
        if (answer.status === 204) {
          offset = end;
          pause = 1000;
          continue;
        }
        if (answer.status === 404 || answer.status === 410) {
          localStorage.removeItem(this.key());
          throw new Error("the server lost this upload; drop the file again");
        }
        // 409 with Upload-Offset: a wrong offset; with Retry-After: another request still
        // writes (one cut off a moment ago).  Any other 4xx will not go away by retrying.
        const resumable = answer.status === 409 && (
          answer.getResponseHeader("Upload-Offset") !== null ||
          answer.getResponseHeader("Retry-After") !== null);
        if (answer.status >= 400 && answer.status < 500 && answer.status !== 408 && !resumable) {
          throw new Error(`${answer.status} ${answer.statusText}`);
        }
        // The connection broke, the server restarted or another request still writes:
        // wait, ask where the upload stands, and go on from there.
        this.status.textContent = "connection lost, resuming…";
        await sleep(pause);
        pause = Math.min(pause * 2, RETRY_MAX);
        const known = await this.offset();
        if (known === null) {
          throw new Error("the server lost this upload; drop the file again");
        }
        offset = known;
      }
    }

    async offset() {
      const answer = await this.patiently(() => request("HEAD", this.resource));
      if (answer.status === 204 && answer.getResponseHeader("Upload-Offset") !== null) {
        const offset = Number(answer.getResponseHeader("Upload-Offset"));
        this.progress(offset);
        return offset;
      }
      if (answer.status === 404) localStorage.removeItem(this.key());
      return null;
    }

    async create() {
      for (let copy = 0; copy < 100 && this.state === "sending"; copy++) {
        const path = copy ? numbered(this.path, copy) : this.path;
        const answer = await this.patiently(() => request("PUT", url(path), {
          "Upload-Complete": "?0", "Upload-Length": String(this.file.size),
        }, new Blob([])));
        if (answer.status === 201) {
          this.resource = answer.getResponseHeader("Location");
          localStorage.setItem(this.key(), this.resource);
          if (copy) this.row.querySelector(".name").textContent = path;
          return 0;
        }
        if (answer.status === 409 && !copy && !(await this.keepBoth())) {
          this.say("skipped", "exists already: skipped");
          return null;
        }
        if (answer.status !== 409) throw new Error(`${answer.status} ${answer.statusText}`);
      }
      throw new Error("no free name");
    }

    keepBoth() {
      this.say("sending", "exists already: ");
      return new Promise((done) => {
        const keep = document.createElement("button");
        keep.type = "button";
        keep.textContent = "Keep both";
        const skip = document.createElement("button");
        skip.type = "button";
        skip.textContent = "Skip";
        keep.onclick = () => { keep.remove(); skip.remove(); done(true); };
        skip.onclick = () => { keep.remove(); skip.remove(); done(false); };
        this.status.append(keep, " ", skip);
      });
    }

    cancel() {
      const was = this.state;
      this.say("cancelled", "cancelled");
      if (this.xhr) this.xhr.abort();
      if (this.file) localStorage.removeItem(this.key());
      if (was !== "waiting" && this.resource) request("DELETE", this.resource);
      update();
      if (!running) run();
    }
  }

  function numbered(path, copy) {
    const slash = path.lastIndexOf("/") + 1;
    const dot = path.lastIndexOf(".");
    const cut = dot > slash ? dot : path.length;
    return `${path.slice(0, cut)} (${copy})${path.slice(cut)}`;
  }

  function sleep(ms) {
    return new Promise((done) => setTimeout(done, ms));
  }

  // One request; resolves with the XHR (status 0 when the connection failed), never rejects.
  function request(method, target, headers, body, onProgress, owner) {
    return new Promise((done) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, target);
      for (const [name, value] of Object.entries(headers || {})) xhr.setRequestHeader(name, value);
      if (onProgress) xhr.upload.onprogress = (event) => onProgress(event.loaded);
      if (owner) owner.xhr = xhr;
      xhr.onloadend = () => done(xhr);
      xhr.send(body === undefined ? null : body);
    });
  }

  // --- file management: New folder, Rename, Delete -----------------------------------------
  const newFolder = panel.querySelector(".new-folder");
  if (newFolder) {
    newFolder.onclick = async () => {
      const name = prompt("Name of the new folder:");
      if (!name) return;
      const answer = await request("MKCOL", url(name));
      if (answer.status === 201) location.reload();
      else alert(`The folder was not made: ${answer.status} ${answer.statusText}`);
    };
  }

  if (can.rename || can.remove) {
    for (const link of document.querySelectorAll("tbody tr:not(.parent) td.name a")) {
      const href = link.getAttribute("href");
      if (!href || href.startsWith("../")) continue;
      const cell = link.closest("td");
      const target = new URL(href, location.href).pathname;
      const name = decodeURIComponent(target.replace(/\/$/, "").split("/").pop());
      if (can.rename) cell.append(" ", action("Rename", async () => {
        const renamed = prompt("New name:", name);
        if (!renamed || renamed === name) return;
        const answer = await request("MOVE", target, {
          "Destination": url(renamed) + (target.endsWith("/") ? "/" : ""), "Overwrite": "F"});
        if (answer.status === 201 || answer.status === 204) location.reload();
        else alert(`Not renamed: ${answer.status} ${answer.statusText}`);
      }));
      if (can.remove) cell.append(" ", action("Delete", async () => {
        if (!confirm(`Delete ${name}${target.endsWith("/") ? " and everything in it" : ""}?`)) {
          return;
        }
        const answer = await request("DELETE", target);
        if (answer.status === 204) location.reload();
        else alert(`Not deleted: ${answer.status} ${answer.statusText}`);
      }));
    }
  }

  function action(label, onClick) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "file-action";
    button.textContent = label;
    button.onclick = onClick;
    return button;
  }
})();
