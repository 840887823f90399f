"""Simulated citizens: personas made from facts, who read the bot's questions and answer as people do.

facts.py     the persona facts and a seeded generator (>= 40 personas, deterministic)
answerer.py  a Citizen: reads only the bot's reply text and answers from its facts in its style
run.py       one persona through a fresh conversation on the real app, compared with the outbox
"""
