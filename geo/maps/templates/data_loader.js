function issuemapData(name) {
  var all = window.issuemapPageData || (window.issuemapPageData =
    JSON.parse(document.getElementById("im-data").textContent));
  return all[name];
}

function issuemapTooltip(properties, pairs) {
  // A tooltip's rows as text, never HTML: names come from boundary files.
  var table = document.createElement("table");
  pairs.forEach(function (pair) {
    var row = table.insertRow(), label = document.createElement("th");
    var value = properties[pair[0]];
    label.textContent = pair[1];
    row.appendChild(label);
    row.insertCell().textContent = value === null || value === undefined ? "" : String(value);
  });
  return table;
}
