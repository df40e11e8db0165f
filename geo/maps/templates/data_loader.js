function issuemapData(name) {
  var all = window.issuemapPageData || (window.issuemapPageData =
    JSON.parse(document.getElementById("im-data").textContent));
  return all[name];
}
