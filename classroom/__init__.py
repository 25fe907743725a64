"""The domain: schools, classrooms, pairings, lessons, people; and the classroom agent."""
