"""The report's inline stylesheet and script: no network, no framework, works from file://."""

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:12px 20px}header h1{margin:0;font-size:20px}
main{padding:12px 20px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:12px 0;padding:10px 14px}
h2{font-size:17px;margin:4px 0 8px}table{border-collapse:collapse}
td,th{border:1px solid #dde1e7;padding:3px 8px;text-align:right}th{background:#eef1f5}
td:first-child,th:first-child{text-align:left}
.charts img{height:180px;max-width:100%;object-fit:contain;margin:4px;border:1px solid #dde1e7}
.filters label{margin-right:14px}.filters select{margin-left:4px}
details.episode{border:1px solid #dde1e7;border-radius:6px;margin:8px 0;background:#fff}
details.episode>summary{padding:6px 10px;cursor:pointer}
.body{padding:4px 14px 10px}.turn{border-left:3px solid #9aa5b8;margin:8px 0;padding:2px 10px}
.badge{display:inline-block;border-radius:3px;padding:0 6px;margin-left:6px;font-size:12px}
.ok{background:#d5f2dc;color:#145c2a}.bad{background:#fadadd;color:#8a1422}
.warn{background:#fff1c7;color:#6b4b00}.info{background:#e3e9f6;color:#1f3b73}
pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;background:#f3f4f7;padding:6px}
.call{font-family:ui-monospace,monospace;background:#eef4ff;padding:4px 6px}
figure{display:inline-block;margin:4px 10px 4px 0;vertical-align:top}
figure img{max-width:360px;max-height:300px;display:block;border:1px solid #ccd}
figcaption{font-size:12px;color:#555}.frame{position:relative;display:inline-block}
.box{position:absolute;border:2px solid #e8112d;box-shadow:0 0 0 1px #fff}
.missing{display:inline-block;width:160px;height:90px;background:#eee;border:1px dashed #999;
 color:#666;font-size:12px;padding:4px;box-sizing:border-box}
.tree{border:1px solid #dde1e7;border-radius:6px;margin:8px 0;padding:6px 10px}
.tree ul{margin:2px 0 2px 8px;padding-left:14px;border-left:2px solid #c8cfdb}
.cut{background:#ffe08a;padding:0 3px;border-radius:2px}.src{font-weight:600}
.hidden{display:none}img.broken{min-width:120px;min-height:60px;outline:2px dashed #b00}
"""

JS = """
(function(){
  var boxes=document.querySelectorAll('.filters select, .filters input');
  function show(){
    var f={};boxes.forEach(function(b){f[b.name]=b.type==='checkbox'?b.checked:b.value;});
    var n=0;
    document.querySelectorAll('details.episode').forEach(function(e){
      var d=e.dataset, ok=(!f.env||d.env===f.env)
        &&(!f.outcome||d.correct===(f.outcome==='correct'?'1':'0'))
        &&(!f.tool||d.tool===(f.tool==='used'?'1':'0'))
        &&(!f.errors||d.errors==='1')&&(!f.truncated||d.truncated==='1')
        &&(!f.role||d.role===f.role);
      e.classList.toggle('hidden',!ok);if(ok)n++;
    });
    var c=document.getElementById('shown');if(c)c.textContent=n;
  }
  boxes.forEach(function(b){b.addEventListener('change',show);});
  show();
  function reveal(){  // a link to an episode (#ep-...) opens it
    var e=location.hash&&document.getElementById(location.hash.slice(1));
    for(;e;e=e.parentElement){if(e.tagName==='DETAILS')e.open=true;}
  }
  window.addEventListener('hashchange',reveal);reveal();
  window.addEventListener('load',function(){  // a moved or deleted image: say so, visibly
    document.querySelectorAll('img').forEach(function(i){
      if(!i.naturalWidth){i.classList.add('broken');console.error('image not found: '+i.src);}
    });
  });
})();
"""
