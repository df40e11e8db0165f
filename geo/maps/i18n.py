"""Labels of the map pages in Thai and English, and which of them a request gets."""

from __future__ import annotations

LANGUAGES = ("en", "th")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "public_title": "Reported issues",
        "zone_title": "Zone {zone}: open reports",
        "wards_title": "Wards: {measure}",
        "overview_title": "City overview",
        "category": "Category",
        "status": "Status",
        "all": "All",
        "from": "From",
        "to": "To",
        "apply": "Show",
        "measure": "Measure",
        "legend": "Legend",
        "heat": "Open reports (heat)",
        "reports": "Reports",
        "wards": "Wards",
        "zone": "Zone",
        "overdue": "Overdue",
        "due": "Due",
        "age": "Age",
        "move": "Move to",
        "moved": "Moved to",
        "failed": "Could not change the status",
        "shown": "Showing {shown} of {total} reports.",
        "hidden": "{hidden} more not shown: zoom in and search this area, or see the next page.",
        "search_area": "Search this area",
        "next_page": "Next page",
        "no_data": "No data",
        "count": "Reports",
        "sla": "Resolved within SLA",
        "median_hours": "Median hours to resolve",
        "days": "d",
        "hours": "h",
    },
    "th": {
        "public_title": "ปัญหาที่ได้รับแจ้ง",
        "zone_title": "เขต {zone}: เรื่องที่ยังเปิดอยู่",
        "wards_title": "ชุมชน/แขวง: {measure}",
        "overview_title": "ภาพรวมเมือง",
        "category": "ประเภท",
        "status": "สถานะ",
        "all": "ทั้งหมด",
        "from": "ตั้งแต่",
        "to": "ถึง",
        "apply": "แสดง",
        "measure": "ตัวชี้วัด",
        "legend": "คำอธิบายสัญลักษณ์",
        "heat": "ความหนาแน่นของเรื่องที่เปิดอยู่",
        "reports": "เรื่องที่แจ้ง",
        "wards": "แขวง",
        "zone": "เขต",
        "overdue": "เกินกำหนด",
        "due": "กำหนดเสร็จ",
        "age": "อายุเรื่อง",
        "move": "เปลี่ยนเป็น",
        "moved": "เปลี่ยนเป็น",
        "failed": "เปลี่ยนสถานะไม่สำเร็จ",
        "shown": "แสดง {shown} จาก {total} เรื่อง",
        "hidden": "ยังไม่แสดงอีก {hidden} เรื่อง: ซูมเข้าแล้วค้นหาในบริเวณนี้ หรือดูหน้าถัดไป",
        "search_area": "ค้นหาในบริเวณนี้",
        "next_page": "หน้าถัดไป",
        "no_data": "ไม่มีข้อมูล",
        "count": "จำนวนเรื่อง",
        "sla": "แก้ไขทันกำหนด",
        "median_hours": "ค่ามัธยฐานชั่วโมงที่ใช้แก้ไข",
        "days": "วัน",
        "hours": "ชม.",
    },
}
"""Every label a map page shows, in English and Thai."""

STATUS_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "open": "Open",
        "acknowledged": "Acknowledged",
        "in_progress": "In progress",
        "resolved": "Resolved",
        "closed": "Closed",
        "reopened": "Reopened",
        "rejected": "Rejected",
        "duplicate": "Duplicate",
    },
    "th": {
        "open": "รับแจ้ง",
        "acknowledged": "รับเรื่องแล้ว",
        "in_progress": "กำลังดำเนินการ",
        "resolved": "แก้ไขแล้ว",
        "closed": "ปิดเรื่อง",
        "reopened": "เปิดใหม่",
        "rejected": "ไม่รับเรื่อง",
        "duplicate": "เรื่องซ้ำ",
    },
}


def pick_language(lang: str | None, accept_language: str | None = None) -> str:
    """``lang`` if it is one we speak, else the best match in ``Accept-Language``, else en."""
    if lang and lang.strip().lower()[:2] in LANGUAGES:
        return lang.strip().lower()[:2]
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        code = tag.strip().lower()[:2]
        if code in LANGUAGES and quality > 0:
            ranked.append((-quality, index, code))
    return min(ranked)[2] if ranked else "en"
