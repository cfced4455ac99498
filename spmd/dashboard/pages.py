"""The dashboard's two pages and their one script, as strings: nothing is fetched from elsewhere.

The server draws the charts (spmd.html_report); the script only asks for them again
every few seconds while the job runs, follows one item's log, and sends Cancel. Every request
carries the token in an ``X-Spmd-Token`` header, which a page of another site cannot set.
"""
from __future__ import annotations

from ..html_report import CSS, esc

POLL_MS = 2000

_EXTRA_CSS = """
nav a{margin-right:1em}#jobs td{white-space:nowrap}button{font-size:14px;padding:.2em .8em}
#item{position:fixed;right:0;top:0;bottom:0;width:45%;background:#fff;border-left:2px solid #888;
padding:1em;overflow:auto;display:none;box-shadow:-4px 0 8px rgba(0,0,0,.1)}#item pre{max-height:60vh}
"""

SCRIPT = """
'use strict';
var token = document.body.dataset.token;
function api(path, options) {
  options = options || {};
  options.headers = Object.assign({'X-Spmd-Token': token}, options.headers || {});
  options.credentials = 'same-origin';
  return fetch(path, options).then(function (r) {
    if (!r.ok) { throw new Error(r.status + ' ' + r.statusText); }
    return r.json();
  });
}
function text(tag, value) { var e = document.createElement(tag); e.textContent = value; return e; }
function age(s) {
  if (s === null || s === undefined) { return ''; }
  var units = [['d', 86400], ['h', 3600], ['m', 60]];
  for (var i = 0; i < units.length; i++) { if (s >= units[i][1]) { return Math.floor(s / units[i][1]) + units[i][0]; } }
  return Math.floor(Math.max(s, 0)) + 's';
}
var STATES = ['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];

function showJobs() {
  api('/api/jobs').then(function (jobs) {
    var body = document.querySelector('#jobs tbody');
    body.textContent = '';
    jobs.forEach(function (job) {
      var tr = document.createElement('tr');
      var link = document.createElement('a');
      link.href = '/job/' + encodeURIComponent(job.id);
      link.textContent = job.id;
      var first = document.createElement('td'); first.appendChild(link); tr.appendChild(first);
      tr.appendChild(text('td', job.name));
      tr.appendChild(text('td', job.backend));
      STATES.forEach(function (s) {
        var td = text('td', job.counts[s]); td.className = 'num ' + s; tr.appendChild(td);
      });
      tr.appendChild(text('td', age(job.age)));
      tr.appendChild(text('td', age(job.duration)));
      tr.appendChild(text('td', job.cost || ''));
      tr.appendChild(text('td', job.after || ''));
      body.appendChild(tr);
    });
    document.getElementById('status').textContent = jobs.length + ' jobs, updated ' + new Date().toLocaleTimeString();
  }).catch(function (e) { document.getElementById('status').textContent = 'cannot update: ' + e.message; });
}

var jobId = document.body.dataset.job;
var following = null;

function showJob() {
  api('/api/jobs/' + encodeURIComponent(jobId) + '/live').then(function (live) {
    Object.keys(live.sections).forEach(function (name) {
      document.getElementById(name).innerHTML = live.sections[name];  // drawn and escaped by the server
    });
    document.querySelectorAll('tr[data-item]').forEach(function (tr) {
      tr.addEventListener('click', function () { openItem(Number(tr.dataset.item)); });
    });
    document.getElementById('status').textContent = (live.done ? 'ended' : 'running') + ', updated ' + new Date().toLocaleTimeString();
    document.getElementById('cancel').disabled = live.done;
    if (!live.done) { setTimeout(showJob, POLL); }
  }).catch(function (e) {
    document.getElementById('status').textContent = 'cannot update: ' + e.message;
    setTimeout(showJob, POLL * 2);
  });
}

function openItem(index) {
  var panel = document.getElementById('item');
  panel.style.display = 'block';
  panel.textContent = '';
  var close = text('button', 'close'); close.onclick = function () { panel.style.display = 'none'; following = null; };
  panel.appendChild(close);
  panel.appendChild(text('h2', 'item ' + index));
  api('/api/jobs/' + encodeURIComponent(jobId) + '/items/' + index).then(function (item) {
    var facts = document.createElement('dl');
    var row = item.row;
    var pairs = [['task', item.task], ['state', row.state], ['attempts', row.attempts],
                 ['why', row.reasons.join('; ')], ['error', row.error], ['host', row.host],
                 ['image', row.image + ' ' + row.image_digest],
                 ['peak memory', row.peak_memory ? (row.peak_memory / 1048576).toFixed(1) + ' MiB of ' +
                   (item.memory_limit / 1048576).toFixed(0) + ' MiB' : '']];
    pairs.forEach(function (p) { facts.appendChild(text('dt', p[0])); facts.appendChild(text('dd', p[1])); });
    panel.appendChild(facts);
    panel.appendChild(text('h2', 'inputs'));
    var inputs = document.createElement('ul');
    (item.inputs.length ? item.inputs : ['(no URL inputs)']).forEach(function (u) { inputs.appendChild(text('li', u)); });
    panel.appendChild(inputs);
    panel.appendChild(text('h2', 'output files'));
    var outputs = document.createElement('ul');
    var names = Object.keys(item.outputs);
    if (!names.length) { outputs.appendChild(text('li', '(none)')); }
    names.forEach(function (n) { outputs.appendChild(text('li', n + '  ' + item.outputs[n])); });
    panel.appendChild(outputs);
    panel.appendChild(text('h2', 'log'));
    var log = document.createElement('pre'); log.id = 'log';
    panel.appendChild(log);
    following = {index: index, offset: 0, log: log};
    followLog(following);
  }).catch(function (e) { panel.appendChild(text('p', 'cannot read the item: ' + e.message)); });
}

function followLog(state) {
  if (following !== state) { return; }
  api('/api/jobs/' + encodeURIComponent(jobId) + '/items/' + state.index + '/log?offset=' + state.offset)
    .then(function (part) {
      if (part.cut) { state.log.textContent = '(the log was cut; from its kept end)\\n'; }
      state.log.textContent += part.text;
      state.offset = part.length;
      if (!part.ended) { setTimeout(function () { followLog(state); }, POLL); }
    }).catch(function (e) { state.log.textContent += '\\n(cannot read: ' + e.message + ')'; });
}

function cancelJob() {
  if (!window.confirm('Cancel job ' + jobId + '? Running tasks stop; finished results stay.')) { return; }
  api('/api/jobs/' + encodeURIComponent(jobId) + '/cancel', {method: 'POST'}).then(function () {
    setTimeout(showJob, 0);
  }).catch(function (e) { document.getElementById('status').textContent = 'cancel failed: ' + e.message; });
}

var POLL = Number(document.body.dataset.poll);
if (jobId) {
  document.getElementById('cancel').addEventListener('click', cancelJob);
  showJob();
} else {
  showJobs();
  setInterval(showJobs, POLL * 2.5);
}
"""


def _page(title: str, token: str, body: str, job: str = "") -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}{_EXTRA_CSS}</style></head>"
            f'<body data-token="{esc(token)}" data-job="{esc(job)}" data-poll="{POLL_MS}">'
            f'<nav><a href="/">jobs</a></nav>{body}<script src="/static/dashboard.js"></script>'
            f"</body></html>")


def jobs_page(token: str, store_url: str) -> str:
    """The jobs page: a table the script fills from /api/jobs."""
    heads = ["job", "name", "backend", *(s.lower() for s in
                                         ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")),
             "age", "duration", "cost", "after"]
    return _page("spmd jobs", token,
                 f"<h1>spmd jobs</h1><p class=\"muted\">in {esc(store_url)} · "
                 f'<span id="status">loading</span></p><table id="jobs"><thead><tr>'
                 + "".join(f"<th>{h}</th>" for h in heads) + "</tr></thead><tbody></tbody></table>")


def job_page(token: str, job_id: str, report_href: str) -> str:
    """One job: sections the script fills from /api/jobs/<id>/live while the job runs."""
    sections = "".join(f'<h2>{title}</h2><div id="{name}"></div>' for name, title in (
        ("summary", "Summary"), ("timeline", "Timeline"), ("failures", "Failures"),
        ("memory", "Memory"), ("items", "Items (click one for its log, inputs and outputs)")))
    return _page(f"spmd job {job_id}", token,
                 f"<h1>job {esc(job_id)}</h1><p><span id=\"status\">loading</span> · "
                 f'<a href="{esc(report_href)}">HTML report</a> · '
                 f'<button id="cancel" disabled>Cancel</button></p>{sections}<div id="item"></div>',
                 job=job_id)
