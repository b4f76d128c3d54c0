"use strict";(self.rspackChunktinygrad_nb_lab=self.rspackChunktinygrad_nb_lab||[]).push([[1],{20(o,t,r){var e=r(21),a=r.n(e),n=r(22),i=(r.n(n))()(a());i.push([o.id,`/* tinygrad_nb Lab extension: colours and fonts only from JupyterLab's theme variables (light and dark). */

.tg-StatusItem {
  display: flex;
  align-items: center;
  gap: 6px;
  padding: 0 6px;
  font-size: var(--jp-ui-font-size1);
  color: var(--jp-ui-font-color1);
  white-space: nowrap;
}

.tg-StatusItem-logo {
  font-weight: 600;
  color: var(--jp-brand-color1);
}

.tg-StatusItem-part + .tg-StatusItem-part::before {
  content: '\xb7';
  margin-right: 6px;
  color: var(--jp-ui-font-color2);
}

.tg-StatusItem-part.tg-mod-error {
  color: var(--jp-error-color1);
  font-weight: 600;
  cursor: pointer;
}

.tg-StatusItem[data-tg-status='busy'] .tg-StatusItem-logo {
  color: var(--jp-warn-color1);
}

.tg-RunsSidebar,
.tg-History {
  display: flex;
  flex-direction: column;
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size1);
  font-family: var(--jp-ui-font-family);
  min-width: 260px;
}

.tg-RunsSidebar-header,
.tg-History-header {
  padding: 6px 8px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.tg-RunsSidebar h2,
.tg-History h2 {
  margin: 2px 0 4px;
  font-size: var(--jp-ui-font-size2);
  font-weight: 600;
  text-transform: uppercase;
  letter-spacing: 0.5px;
}

.tg-RunsSidebar-where,
.tg-History-info {
  color: var(--jp-ui-font-color2);
  margin-bottom: 6px;
  overflow-wrap: anywhere;
}

.tg-RunsSidebar-controls,
.tg-History-toolbar {
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
}

.tg-RunsSidebar-search {
  flex: 1 1 140px;
  min-width: 0;
}

.tg-RunsSidebar-list,
.tg-History-list {
  overflow-y: auto;
  flex: 1 1 auto;
}

.tg-RunsSidebar-error,
.tg-RunRow-damage {
  color: var(--jp-error-color1);
  padding: 4px 8px;
}

.tg-RunsSidebar-empty,
.tg-History-empty {
  color: var(--jp-ui-font-color2);
  padding: 8px;
}

.tg-RunRow {
  padding: 5px 8px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color3);
}

.tg-RunRow-top {
  display: flex;
  align-items: center;
  gap: 6px;
  cursor: pointer;
}

.tg-RunRow-name {
  font-weight: 600;
  flex: 1 1 auto;
  overflow: hidden;
  text-overflow: ellipsis;
}

.tg-RunRow-dot {
  width: 8px;
  height: 8px;
  border-radius: 50%;
  flex: 0 0 auto;
  background: var(--jp-ui-font-color3);
}

.tg-status-running .tg-RunRow-dot {
  background: var(--jp-brand-color1);
}

.tg-status-finished .tg-RunRow-dot {
  background: var(--jp-success-color1);
}

.tg-status-failed .tg-RunRow-dot,
.tg-status-nan .tg-RunRow-dot,
.tg-status-crashed .tg-RunRow-dot,
.tg-status-damaged .tg-RunRow-dot {
  background: var(--jp-error-color1);
}

.tg-RunRow-statusText,
.tg-RunRow-meta,
.tg-RunRow-fingerprint {
  color: var(--jp-ui-font-color2);
}

.tg-RunRow-config,
.tg-RunRow-metrics,
.tg-RunRow-fingerprint {
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
  margin-left: 20px;
  word-break: break-all;
}

.tg-RunRow-meta {
  margin-left: 20px;
}

.tg-Comparison {
  padding: 12px;
  overflow: auto;
  background: var(--jp-layout-color0);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size1);
}

.tg-Comparison-legend {
  display: flex;
  flex-wrap: wrap;
  gap: 12px;
  margin-bottom: 8px;
}

.tg-Comparison-swatch {
  display: inline-block;
  width: 12px;
  height: 3px;
  margin-right: 4px;
  vertical-align: middle;
}

.tg-Comparison-charts {
  display: flex;
  flex-wrap: wrap;
  gap: 12px;
}

.tg-Chart {
  border: var(--jp-border-width) solid var(--jp-border-color2);
  background: var(--jp-layout-color1);
  padding: 4px;
  width: 360px;
}

.tg-Chart-title {
  font-family: var(--jp-code-font-family);
  margin-bottom: 2px;
}

.tg-Chart-svg {
  width: 100%;
  height: auto;
}

.tg-Chart-axis {
  fill: none;
  stroke: var(--jp-border-color1);
  stroke-width: 1;
}

.tg-Chart-line {
  fill: none;
  stroke-width: 1.5;
  vector-effect: non-scaling-stroke;
}

.tg-Chart-label {
  fill: var(--jp-ui-font-color2);
  font-size: 10px;
}

.tg-Comparison-section h3 {
  font-size: var(--jp-ui-font-size2);
  margin: 14px 0 6px;
}

.tg-Comparison-table {
  border-collapse: collapse;
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
}

.tg-Comparison-table th,
.tg-Comparison-table td {
  border: var(--jp-border-width) solid var(--jp-border-color2);
  padding: 2px 8px;
  text-align: left;
  max-width: 360px;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.tg-Comparison-table th {
  background: var(--jp-layout-color2);
}

.tg-mod-missing,
.tg-Comparison-same {
  color: var(--jp-ui-font-color3);
}

.tg-Commit {
  padding: 5px 8px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color3);
  border-left: 3px solid transparent;
}

.tg-Commit.tg-mod-head {
  border-left-color: var(--jp-brand-color1);
  background: var(--jp-layout-color2);
}

.tg-Commit-label {
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
  cursor: pointer;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
}

.tg-Commit-badges {
  align-items: center;
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
  margin: 3px 0;
}

.tg-Badge {
  border-radius: 3px;
  padding: 0 5px;
  font-size: var(--jp-ui-font-size0);
  border: var(--jp-border-width) solid var(--jp-border-color2);
  color: var(--jp-ui-font-color2);
}

.tg-Badge-head {
  color: var(--jp-brand-color1);
  border-color: var(--jp-brand-color1);
}

.tg-Badge-error,
.tg-Badge-diverged,
.tg-Badge-lost {
  color: var(--jp-error-color1);
  border-color: var(--jp-error-color1);
}

.tg-Badge-bitwise {
  color: var(--jp-success-color1);
  border-color: var(--jp-success-color1);
}

.tg-History-button {
  font-size: var(--jp-ui-font-size1);
  padding: 1px 8px;
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: 2px;
  cursor: pointer;
}

.tg-History-button:disabled {
  opacity: 0.5;
  cursor: default;
}

.tg-Commit-badges .tg-History-checkout {
  margin-left: auto;
  padding: 0 6px;
  font-size: var(--jp-ui-font-size0);
}

.tg-History-toolbar .tg-History-button {
  padding: 1px 6px;
}
`,""]),r.d(t,{},{A:i})},22(o){o.exports=function(o){var t=[];return t.toString=function(){return this.map(function(t){var r="",e=void 0!==t[5];return t[4]&&(r+="@supports (".concat(t[4],") {")),t[2]&&(r+="@media ".concat(t[2]," {")),e&&(r+="@layer".concat(t[5].length>0?" ".concat(t[5]):""," {")),r+=o(t),e&&(r+="}"),t[2]&&(r+="}"),t[4]&&(r+="}"),r}).join("")},t.i=function(o,r,e,a,n){"string"==typeof o&&(o=[[null,o,void 0]]);var i={};if(e)for(var s=0;s<this.length;s++){var p=this[s][0];null!=p&&(i[p]=!0)}for(var l=0;l<o.length;l++){var d=[].concat(o[l]);e&&i[d[0]]||(void 0!==n&&(void 0===d[5]||(d[1]="@layer".concat(d[5].length>0?" ".concat(d[5]):""," {").concat(d[1],"}")),d[5]=n),r&&(d[2]&&(d[1]="@media ".concat(d[2]," {").concat(d[1],"}")),d[2]=r),a&&(d[4]?(d[1]="@supports (".concat(d[4],") {").concat(d[1],"}"),d[4]=a):d[4]="".concat(a)),t.push(d))}},t}},21(o){o.exports=function(o){return o[1]}},14(o){var t=[];function r(o){for(var r=-1,e=0;e<t.length;e++)if(t[e].identifier===o){r=e;break}return r}function e(o,e){for(var a={},n=[],i=0;i<o.length;i++){var s=o[i],p=e.base?s[0]+e.base:s[0],l=a[p]||0,d="".concat(p," ").concat(l);a[p]=l+1;var c=r(d),u={css:s[1],media:s[2],sourceMap:s[3],supports:s[4],layer:s[5]};if(-1!==c)t[c].references++,t[c].updater(u);else{var g=function(o,t){var r=t.domAPI(t);return r.update(o),function(t){t?(t.css!==o.css||t.media!==o.media||t.sourceMap!==o.sourceMap||t.supports!==o.supports||t.layer!==o.layer)&&r.update(o=t):r.remove()}}(u,e);e.byIndex=i,t.splice(i,0,{identifier:d,updater:g,references:1})}n.push(d)}return n}o.exports=function(o,a){var n=e(o=o||[],a=a||{});return function(o){o=o||[];for(var i=0;i<n.length;i++){var s=r(n[i]);t[s].references--}for(var p=e(o,a),l=0;l<n.length;l++){var d=r(n[l]);0===t[d].references&&(t[d].updater(),t.splice(d,1))}n=p}}},16(o){var t={};o.exports=function(o,r){var e=function(o){if(void 0===t[o]){var r=document.querySelector(o);if(window.HTMLIFrameElement&&r instanceof window.HTMLIFrameElement)try{r=r.contentDocument.head}catch(o){r=null}t[o]=r}return t[o]}(o);if(!e)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");e.appendChild(r)}},18(o){o.exports=function(o){var t=document.createElement("style");return o.setAttributes(t,o.attributes),o.insert(t,o.options),t}},17(o,t,r){o.exports=function(o){var t=r.nc;t&&o.setAttribute("nonce",t)}},15(o){o.exports=function(o){if("u"<typeof document)return{update:function(){},remove:function(){}};var t=o.insertStyleElement(o);return{update:function(r){var e,a,n;e="",r.supports&&(e+="@supports (".concat(r.supports,") {")),r.media&&(e+="@media ".concat(r.media," {")),(a=void 0!==r.layer)&&(e+="@layer".concat(r.layer.length>0?" ".concat(r.layer):""," {")),e+=r.css,a&&(e+="}"),r.media&&(e+="}"),r.supports&&(e+="}"),(n=r.sourceMap)&&"u">typeof btoa&&(e+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(n))))," */")),o.styleTagTransform(e,t,o.options)},remove:function(){var o;null===(o=t).parentNode||o.parentNode.removeChild(o)}}}},19(o){o.exports=function(o,t){if(t.styleSheet)t.styleSheet.cssText=o;else{for(;t.firstChild;)t.removeChild(t.firstChild);t.appendChild(document.createTextNode(o))}}},13(o,t,r){var e=r(14),a=r.n(e),n=r(15),i=r.n(n),s=r(16),p=r.n(s),l=r(17),d=r.n(l),c=r(18),u=r.n(c),g=r(19),f=r.n(g),v=r(20),m={};m.styleTagTransform=f(),m.setAttributes=d(),m.insert=p().bind(null,"head"),m.domAPI=i(),m.insertStyleElement=u(),a()(v.A,m),v.A&&v.A.locals&&v.A.locals}}]);