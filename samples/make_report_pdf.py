"""Write samples/report.pdf: a fictional company's quarterly report, several pages of text.

Uses pypdf alone (a dependency of starcli already): each page gets a content stream of text
operators in Helvetica, so the PDF has a real text layer. Run: python samples/make_report_pdf.py
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

TITLE = "Halvorsen Marine Instruments ASA - Third Quarter 2025 Report"
SECTIONS = [
    (
        "Letter from the Chief Executive",
        """
Dear shareholders, the third quarter of 2025 was the strongest quarter in the history of Halvorsen
Marine Instruments. Revenue reached 412.6 million Norwegian kroner, an increase of 14 percent from
the same quarter last year, and the order backlog ended the quarter at 1.21 billion kroner. Demand
for our navigation systems stayed high among fishing fleets in the North Atlantic, and the first
deliveries of the new Skarv sonar platform went out on schedule to customers in Norway, Iceland
and Canada.

The quarter was not without difficulty. A shortage of specialised ceramic transducers slowed
production at our Bergen factory during July, and freight costs from Asia rose again in August.
Our teams responded well. By moving two assembly lines to a second shift and by qualifying a new
supplier in Finland, we recovered most of the lost output before the end of September.

We also continued to invest in the future. Research and development spending rose to 51.3 million
kroner, or 12.4 percent of revenue, and we opened a small software office in Tromso that will work
on fleet analytics. I want to thank our 1,140 employees for their effort during a demanding
summer, and our customers for their continued trust.

Ingrid Halvorsen, Chief Executive Officer
""",
    ),
    (
        "Financial Highlights",
        """
Revenue for the quarter was 412.6 million kroner, compared with 361.9 million kroner in the third
quarter of 2024. Gross margin improved to 41.8 percent from 39.6 percent, helped by a better product
mix and by higher prices on service contracts. Operating expenses were 118.4 million kroner.

Operating profit (EBIT) was 54.1 million kroner, giving an operating margin of 13.1 percent. Net
profit after tax was 39.7 million kroner, and earnings per share were 2.18 kroner. Cash flow from
operations was 61.0 million kroner, and net interest-bearing debt fell to 88.5 million kroner.

The board has approved an interim dividend of 0.75 kroner per share, to be paid on 14 November 2025
to shareholders registered on 31 October 2025.

Order intake in the quarter was 447.2 million kroner, giving a book-to-bill ratio of 1.08. The
largest single order, worth 63 million kroner, came from a Canadian coast guard programme for
survey vessels and will be delivered over the next eighteen months.
""",
    ),
    (
        "Segment Review",
        """
Navigation Systems. Revenue in the navigation segment grew 11 percent to 198.3 million kroner.
Sales of the Fjord-7 autopilot were particularly strong among mid-sized trawlers, and the segment
won its first contract with a ferry operator in the Baltic Sea. Margins in the segment were stable.

Sonar and Survey. The sonar segment delivered revenue of 141.7 million kroner, up 22 percent, as the
new Skarv sonar platform entered serial production. Forty-two Skarv units were shipped in the
quarter. Early feedback from customers has been positive, in particular on image quality in shallow
water. The segment margin was held back by start-up costs for the new production line.

Service and Software. Revenue from service agreements, spare parts and software subscriptions was
72.6 million kroner, up 6 percent. The number of vessels connected to our fleet analytics service
rose to 1,860 at the end of the quarter, from 1,530 at the end of June. Recurring revenue now makes
up 17.6 percent of group revenue.
""",
    ),
    (
        "Operations and Supply Chain",
        """
The Bergen factory produced 3,920 instruments in the quarter, its highest output to date, despite
the transducer shortage in July. The factory in Gdansk, which makes cable assemblies and housings,
ran at full capacity throughout the quarter. Average delivery time to customers fell from nine weeks
to seven weeks.

During the quarter we signed a three-year supply agreement with a Finnish ceramics maker for
transducer elements. The agreement covers about 40 percent of our expected needs and reduces our
dependence on a single supplier in Asia. We also began a project to reduce packaging waste; by the
end of September, 70 percent of outgoing shipments used recycled cardboard.

Health and safety remained a priority. The lost-time injury rate for the quarter was 0.9 per
million hours worked, down from 1.4 in the second quarter. There were no serious injuries.
""",
    ),
    (
        "Risk Management",
        """
The Q3 risk committee was chaired by Dr. Amara Okonkwo. The committee met three times during the
quarter and focused on supply chain concentration, currency exposure and information security. The
board reviews the main risks to the business every quarter through this committee.

Currency. About 68 percent of our revenue is earned in euros, US dollars and Canadian dollars, while
most of our costs are in Norwegian kroner. We hedge between 50 and 75 percent of expected net
currency flows for the next twelve months. At the end of the quarter, hedges were in place for
62 percent of expected flows.

Information security. The company completed an external penetration test of its fleet analytics
platform in August. No critical weaknesses were found; three medium-level findings were fixed
within thirty days. All employees completed the annual security training by the end of September.

Supply chain. The new Finnish supplier reduces the risk from transducer shortages, but the supply
of certain microcontrollers remains tight. We hold safety stock covering about five months of
production for the most critical components.
""",
    ),
    (
        "Customers and Markets",
        """
Norway remained our largest market with 34 percent of revenue, followed by Canada with 17 percent,
Iceland with 11 percent and the United Kingdom with 9 percent. Sales in the United States grew
quickly from a low base, mainly through a new distribution partner in Seattle that serves the
Alaska fishing fleet.

Fishing vessels account for about 55 percent of revenue, research and survey vessels for 20
percent, coast guard and government customers for 14 percent, and ferries and other commercial
vessels for the rest. The share of government customers is expected to rise in 2026 as the
Canadian survey programme is delivered.

Customer satisfaction, measured by our annual survey in August, rose to 8.4 out of 10 from 8.1 a
year earlier. Customers rated our service response time and the ease of use of the Fjord autopilot
most highly. The lowest score was for the length of delivery times, which we are working to reduce.

During the quarter we took part in the Nor-Fishing trade fair in Trondheim, where the Skarv sonar
was shown to more than 2,000 visitors. Leads from the fair have already resulted in orders worth
about 24 million kroner.
""",
    ),
    (
        "People and Organisation",
        """
At the end of September the group had 1,140 employees, compared with 1,062 a year earlier. Most of
the increase came from the new production line for the Skarv sonar in Bergen and from the new
software office in Tromso, which now has fourteen developers.

Employee turnover for the last twelve months was 6.2 percent. Sick leave in the quarter was 4.1
percent, slightly lower than in the same quarter last year. Women make up 31 percent of the
workforce and 38 percent of the management group.

In September we held our first company-wide innovation week. Teams from all sites presented more
than sixty ideas, and three of them, including a low-power mode for the Fjord autopilot, will be
developed further in 2026.

The apprenticeship programme at the Bergen factory took in twelve new apprentices in August, the
largest group so far. We believe that training our own technicians is the best long-term answer
to the shortage of skilled workers in the region.
""",
    ),
    (
        "Sustainability",
        """
Electricity use at our factories fell by 7 percent compared with the third quarter of 2024, mainly
because of new heat pumps and LED lighting in Bergen. About 96 percent of the electricity we use
comes from renewable sources, most of it hydropower.

Our instruments help customers save fuel. Independent tests with two trawler owners showed that the
route planning function of the Fjord-7 autopilot reduced fuel use by 4 to 6 percent on typical
fishing trips. We estimate that the autopilots sold in the quarter will save their owners about
9,000 tonnes of carbon dioxide per year.

We published our second sustainability report in June, following the European reporting
standards. The report describes our targets to cut our own emissions by half by 2030 and to
offer a take-back scheme for all instruments by the end of 2026.
""",
    ),
    (
        "Research and Development",
        """
Research and development spending in the quarter was 51.3 million kroner, up from 44.0 million
kroner a year earlier. About 190 engineers work on new products at our centres in Bergen, Tromso
and Gdansk.

The main project of the quarter was the Fjord-9 autopilot, which adds support for vessels longer
than 80 metres and for twin-rudder ships. Sea trials on a survey vessel off the coast of Iceland
were completed in September, and the product will be launched in the fourth quarter.

We filed four new patent applications in the quarter, two of them for signal processing methods
used in the Skarv sonar. The fleet analytics team released three software updates, including a
new fuel report that compares each vessel with similar vessels in the same fishing area.
""",
    ),
    (
        "Outlook",
        """
The order backlog of 1.21 billion kroner gives good visibility for the fourth quarter and for the
first half of 2026. We expect revenue for the full year 2025 to be between 1.58 and 1.63 billion
kroner, and we expect the operating margin for the full year to be around 12 percent.

In the fourth quarter we plan to launch the Fjord-9 autopilot for larger vessels and to start a
pilot of remote sonar calibration with two customers. We will continue to invest in research and
development at a level of 11 to 13 percent of revenue.

The main uncertainties in the outlook are the supply of electronic components, freight costs and
the exchange rate of the Norwegian krone. The board will present the full-year results on
12 February 2026.
""",
    ),
    (
        "Condensed Income Statement (million NOK)",
        """
Item                                 Q3 2025     Q3 2024     Change
Revenue                                412.6       361.9      +14.0%
Cost of goods sold                    -240.1      -218.6       +9.8%
Gross profit                           172.5       143.3      +20.4%
Operating expenses                    -118.4      -104.2      +13.6%
Operating profit (EBIT)                 54.1        39.1      +38.4%
Net financial items                     -3.2        -4.0
Profit before tax                       50.9        35.1      +45.0%
Income tax                             -11.2        -7.7
Net profit                              39.7        27.4      +44.9%
Earnings per share (NOK)                2.18        1.51

Headcount at end of quarter: 1,140 (Q3 2024: 1,062). Shares outstanding: 18.2 million.
These figures are unaudited.
""",
    ),
]

PAGE_WIDTH, PAGE_HEIGHT, MARGIN = 612, 792, 72
FONT_SIZE, LEADING = 10.5, 14
LINES_PER_PAGE = int((PAGE_HEIGHT - 2 * MARGIN) / LEADING) - 2


def layout() -> list[list[tuple[str, str]]]:
    """Pages of (font, line): the title, then each section's heading and wrapped paragraphs."""
    lines: list[tuple[str, str]] = [("/F2", TITLE), ("/F1", "")]
    for heading, body in SECTIONS:
        lines += [("/F2", heading), ("/F1", "")]
        table = heading.startswith("Condensed")
        for paragraph in body.strip().split("\n\n"):
            if table:
                lines += [("/F3", row) for row in paragraph.splitlines()]
            else:
                text = " ".join(paragraph.split())
                lines += [("/F1", row) for row in textwrap.wrap(text, 86, break_on_hyphens=False)]
            lines.append(("/F1", ""))
        lines.append(("/F1", ""))
    pages, page = [], []
    for font, text in lines:
        starts_section = font == "/F2" and text != TITLE
        keep_together = 18 if text.startswith("Condensed") else 8  # a heading with its first lines
        if len(page) >= LINES_PER_PAGE or (starts_section and len(page) > LINES_PER_PAGE - keep_together):
            pages.append(page)
            page = []
        if page or text:
            page.append((font, text))
    return [*pages, page] if page else pages


def font(name: str) -> DictionaryObject:
    return DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject(name),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_report(path: Path) -> None:
    writer = PdfWriter()
    fonts = DictionaryObject(
        {
            NameObject("/F1"): font("/Helvetica"),
            NameObject("/F2"): font("/Helvetica-Bold"),
            NameObject("/F3"): font("/Courier"),
        }
    )
    pages = layout()
    for number, lines in enumerate(pages, start=1):
        page = writer.add_blank_page(PAGE_WIDTH, PAGE_HEIGHT)
        ops = ["BT", f"{LEADING} TL", f"{MARGIN} {PAGE_HEIGHT - MARGIN} Td"]
        for name, text in lines:
            size = 14 if name == "/F2" else FONT_SIZE
            ops.append(f"{name} {size} Tf ({escape(text)}) Tj T*")
        ops += ["ET", "BT", f"/F1 9 Tf {PAGE_WIDTH / 2 - 30} 40 Td (Page {number} of {len(pages)}) Tj", "ET"]
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("cp1252"))
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        page.replace_contents(stream)
    writer.add_metadata({"/Title": TITLE, "/Author": "Halvorsen Marine Instruments ASA (fictional)"})
    with open(path, "wb") as handle:
        writer.write(handle)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("report.pdf")
    write_report(target)
    print(f"wrote {target}")
