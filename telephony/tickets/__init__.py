"""Tickets (联动单): the structured record that travels with a transferred call, its states and its history."""
